"""The experiment lifecycle written once for every task: the declared Task contract
(:mod:`.contract`) and the experiment epilogue (:mod:`.finish`). Nothing here names a task."""
