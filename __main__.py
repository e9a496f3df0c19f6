"""Pulumi program entry point: everything is declared by `infra.stack`."""

from infra.stack import main

main()
