from proxy.shadow.noise import NOISE, PENDING, REPORTED, NoiseSampler, verdict


def test_field_differing_as_often_in_noise_is_noise():
    assert verdict(raw=100, compared=100, noise=20, noise_samples=20) == NOISE


def test_field_never_differing_in_noise_is_reported():
    assert verdict(raw=100, compared=100, noise=0, noise_samples=20) == REPORTED


def test_relative_threshold():
    # raw 60 %, noise 50 %: relative difference 9 % < 20 % -> noise
    assert verdict(raw=60, compared=100, noise=10, noise_samples=20) == NOISE
    # raw 90 %, noise 50 %: relative difference 28.6 % > 20 % -> reported
    assert verdict(raw=90, compared=100, noise=10, noise_samples=20) == REPORTED


def test_absolute_threshold():
    # 2 in 100 000 vs 0: rate delta 0.002 % < 0.03 % -> noise
    assert verdict(raw=2, compared=100_000, noise=0, noise_samples=10_000) == NOISE
    assert verdict(raw=50, compared=100_000, noise=0, noise_samples=10_000) == REPORTED


def test_no_verdict_without_enough_evidence():
    assert verdict(raw=5, compared=5, noise=0, noise_samples=5) == PENDING
    assert verdict(raw=50, compared=50, noise=50, noise_samples=3) == PENDING


def test_sampler_spreads_samples_evenly_per_route():
    sampler = NoiseSampler()
    taken = [sampler.take("c", "/a", 25) for _ in range(100)]
    assert sum(taken) == 25
    assert taken[:8] == [False, False, False, True, False, False, False, True]
    assert all(sampler.take("c", "/b", 100) for _ in range(5))
    assert not any(sampler.take("c", "/z", 0) for _ in range(5))
