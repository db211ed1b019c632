"""Shadow traffic: copy requests to the side that did not answer, compare, learn noise, report.

Modules, one concern each: `dispatcher` (the ShadowSink the engine feeds), `compare` (pure diffs),
`paths` (JSONPath-like field keys), `noise` (Diffy's verdicts), `redact` (before anything is
stored), `store` (SQLAlchemy results store), `report` + `render_*` (reports), `admin`, `cli`.
"""
