"""Thin argparse front ends: parse, call one function of the core or an adapter, print.
Imports: anything (adapters inside the function that runs, so --help stays light); nothing
imports commands but cli."""
