"""SIP subscriber conformance suite: YAML scenarios played by a notifier peer.

Modules: `scenario` (loading, JSON-Schema validation), `expr` (safe time expressions),
`peer` (notifier-side SIP messages), `runner` (step interpreter, verdicts), `targets`
(`sim`, `udp`, `sip-only`), `reports` (console, JUnit, JSON, coverage), `cli`
(`b2b-conform`), `pytest_plugin`. See docs/conformance.md.
"""
