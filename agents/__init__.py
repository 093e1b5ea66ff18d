"""Stages (the agents and the engine's own non-model stages) and their model backends.

Every stage has one shape (see `agents.base.Stage`); none of them imports Ray or the engine, so a
stage is testable by calling it directly.
"""
