"""The operator's workflow over rule files: safe edits, stage moves, rollback, history and undo.

`operate.actions` holds every command as a plain function (the CLI in `operate.cli` and the
proxy's automatic rollback both call it); `rule_edit` does the safe write, `history` the audit
log, `transitions` the legal moves, `rule_diff` what a change means for routing.
"""
