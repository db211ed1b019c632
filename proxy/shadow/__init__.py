"""Shadow traffic: copy requests to the side that did not answer, compare, learn noise, report.

See README.md in this folder: `dispatcher` (the ShadowSink the engine feeds), `replay`,
`samples`, `compare` (pure diffs), `paths` (JSONPath-like field keys), `noise` (Diffy's
verdicts), `redact` (before anything is stored), `store` (SQLAlchemy results store), `report`
+ `render_*` + `formats` (reports), `admin` (GET /admin/shadow), `cli` (`strangler shadow report`).
"""
