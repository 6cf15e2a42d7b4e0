#!/usr/bin/env python
"""Writes a synthetic corpus of short SNLI-like English sentences from a small grammar.

It is the bundled default data of the quick start and the test fixture: deterministic for a seed,
lower-cased, tokenised (punctuation split off), one sentence a line.

    python scripts/make_toy_corpus.py --num-sentences 2000 --seed 1 > toy.txt
"""
import argparse
import random

SINGULAR = ["a man", "a woman", "a boy", "a girl", "a dog", "an old man", "a young woman", "the child",
            "a little girl", "a tall man", "a cyclist", "a musician", "a chef", "a surfer", "the worker"]
PLURAL = ["two men", "two women", "three children", "some people", "two dogs", "a group of friends",
          "the kids", "several tourists", "two boys", "four girls", "the players", "a couple"]
MODIFIERS = ["", "", "", "in a red shirt", "wearing a hat", "with a backpack", "in blue jeans",
             "with long hair", "in a black jacket", "holding a cup"]
ACTIONS = ["playing a guitar", "running in the park", "sitting on a bench", "eating a sandwich",
           "walking down the street", "riding a bike", "reading a book", "swimming in the lake",
           "climbing a rock", "cooking dinner", "talking to each other", "looking at the sky",
           "standing near a fountain", "jumping into the water", "painting a wall", "sleeping on the grass",
           "waiting for the bus", "playing soccer", "dancing on a stage", "carrying a box"]
PLACES = ["", "", "", "outside", "at night", "in the snow", "near the river", "in a crowded market",
          "on a sunny day", "inside a building"]


def sentence(rng: random.Random) -> str:
    plural = rng.random() < 0.4
    subject = rng.choice(PLURAL if plural else SINGULAR)
    words = [subject, rng.choice(MODIFIERS), "are" if plural else "is", rng.choice(ACTIONS), rng.choice(PLACES)]
    return " ".join(w for w in words if w) + " ."


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-sentences", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for _ in range(args.num_sentences):
        print(sentence(rng))


if __name__ == "__main__":
    main()
