"""``jenga run``: the local stack (:mod:`common.ops.localstack`)."""

from __future__ import annotations

import argparse


def run_stack(args: argparse.Namespace) -> int:
    from common.ops.localstack import run

    return run(processes=args.processes)
