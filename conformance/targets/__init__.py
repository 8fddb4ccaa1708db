"""Targets: what the runner plays against (`sim`, `udp`, `sip-only`)."""

from __future__ import annotations

from typing import Any

from conformance.runner import Target

TARGET_NAMES = ("sim", "udp", "sip-only")


def make_target(name: str, **options: Any) -> Target:
    """Build a target by name; options are the CLI's target options."""
    if name == "sim":
        from conformance.targets.sim import SimTarget

        sim: Target = SimTarget(reference=not options.get("other_build", False))
        return sim
    if name == "udp":
        from conformance.targets.udp import UdpTarget

        udp = UdpTarget(agent_command=options.get("agent_command"),
                        tolerance=options.get("tolerance", 0.25),
                        tolerance_ratio=options.get("tolerance_ratio", 0.02),
                        control_token=options.get("control_token"))
        if options.get("other_build"):
            udp.reference = False
        return udp
    if name == "sip-only":
        from conformance.targets.udp import SipOnlyTarget

        sip_only: Target = SipOnlyTarget(trigger=options.get("trigger_command"),
                             untrigger=options.get("untrigger_command"),
                             listen=options.get("agent_address"),
                             tolerance=options.get("tolerance", 0.25),
                             tolerance_ratio=options.get("tolerance_ratio", 0.02))
        return sip_only
    raise ValueError(f"unknown target {name!r} (choose from {', '.join(TARGET_NAMES)})")
