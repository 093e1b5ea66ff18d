"""Preference pairs: the rejected answer changes exactly the motion fact the question asks about."""

from __future__ import annotations

import pytest

from agents.preference_pairs import preference_pair


@pytest.mark.parametrize("category, options, answer, expected", [
    ("LM", ["to the left", "to the right", "upward", "downward"], "A", ("To the left.", "To the right.", "wrong_direction", "rule")),
    ("CM", ["zooms in", "pans left", "stays still", "pans up"], "A", ("Zooms in.", "Zooms out.", "wrong_direction", "rule")),
    ("MR", ["spins clockwise", "bounces up and down", "stays still", "moves in a straight line"], "A",
     ("Spins clockwise.", "Spins counterclockwise.", "wrong_direction", "rule")),
    ("AO", ["moves left, then spins clockwise", "a", "b", "c"], "A",
     ("Moves left, then spins clockwise.", "Spins clockwise, then moves left.", "wrong_order", "rule")),
    ("RC", ["once", "twice", "three times", "four times"], "B", ("Twice.", "Three times.", "wrong_count", "rule")),
    ("RC", ["x", "y", "seven times", "z"], "C", ("Seven times.", "Six times.", "wrong_count", "rule")),
    ("LM", ["slowly forward", "a", "b", "c"], "A", ("Slowly forward.", "Slowly backward.", "wrong_direction", "rule")),
    ("MO", ["the red circle", "the blue star", "the green square", "the cyan star"], "B",
     ("The blue star.", "The cyan star.", "wrong_object", "rule")),
    ("LM", ["northwards", "southwards", "nowhere", "east"], "A", ("Northwards.", "East.", "wrong_direction", "distractor")),
])
def test_pairs_change_one_fact(category, options, answer, expected):
    assert preference_pair(category, options, answer) == expected


@pytest.mark.parametrize("category, options, answer", [
    ("MR", ["bounces up and down", "spins clockwise", "stays still", "moves in a straight line"], "A"),  # same words
    ("MR", ["moves in a straight line", "spins clockwise", "stays still", "bounces up and down"], "A"),
    ("AO", ["jumps over a log", "runs right", "sits", "barks"], "A"),  # other actions are not an order
    ("basic", ["red", "blue", "green", "white"], "A"),
])
def test_no_pair_without_a_controlled_change(category, options, answer):
    assert preference_pair(category, options, answer) is None
