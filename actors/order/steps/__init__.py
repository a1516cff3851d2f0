"""The order's pipeline, one module per step, each with its decide and evolve cases.

``model`` holds what the steps share (rules, snapshot, effects, results, decision) and
``common`` the snapshot helpers several steps use; ``actors.order.behaviour`` composes
the steps into the actor's ``decide`` and ``evolve``.
"""
