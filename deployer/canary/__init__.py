"""Canary releases (issue 17): the new version takes a slice of the traffic beside the stable
one, step by step, and each step is judged against the stable version on the same window.
``analysis`` holds the judgement, a pure function of the plan's rules and both tracks' numbers."""
