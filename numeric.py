"""Numeric multiple choice: the right value of a property or yield among values a model could plausibly give.

    truths(task, prompt, answer)         -> (values verify.py counts as true, the right option's text) or None
    population_key(task, prompt)         -> the label population a question's values are drawn like
    Population(values)                   -> an empirical distribution with normal scores (z) and quantiles
    options(task, prompt, answer, pop, rng, n) -> n distractor texts, or [] where none fit

Tasks: weight, tpsa, logp (verify.py's truth is rdkit's value for the prompt's molecule), homolumo, yield (the
truth is the reference label). The right option is the label when verify.py passes it, else rdkit's value.

How the distractors are drawn, so that no rule on the values alone finds the answer: the right value and the
distractors are exchangeable draws of one hierarchical model in normal-score space. Labels of the task (the
training split when given, else the test records) define z = Phi^-1(empirical CDF); a set of options is
c + tau * e_i with c ~ N(0, 1 - tau^2) and e_i ~ N(0, 1), so each option alone is distributed as the labels
are (mapped back through the empirical quantiles) and the options of a set are interchangeable. Given the right
value's z_a, c is drawn from its conditional N((1 - tau^2) z_a, (1 - tau^2) tau^2) and the distractors as
c + tau * e. Then "the middle option", "the option nearest the task's mean", "the largest" and "the smallest"
are each right about 1 / n_options of the time (shortcuts.py measures them). tau = TAU = 0.35 puts options
about half a label standard deviation apart: errors of the size a trained model makes, not values from another
scale; where the tolerance is wide against the labels' spread (logp, yield), tau grows so that the options
span SPREAD_GAPS gaps of GAP_TOL tolerances (at most MAX_TAU). Every distractor is more than GAP_TOL tolerances
from every true value (verify.py judges it wrong) and from every other option; rounded as the label is written.
Measured limit: the tolerance gap breaks the exchangeability at a crowded bounded end (a yield of 0.5 %, with
options more than 10 points from it, is the smallest option), so on yield "the smallest value" is a shortcut.
"""
import re
from statistics import NormalDist

import numpy as np

import answers
import verify

TASKS = ("weight", "tpsa", "logp", "homolumo", "yield")
TAU = 0.35        # within-question spread of the options, in normal-score units of the task's labels
MAX_TAU = 0.8     # the spread a wide tolerance may ask for (yield: 10 points on labels of sd ~ 28)
GAP_TOL = 1.0     # options more than this many verify.py tolerances apart
SPREAD_GAPS = 2.0  # the options' spread is at least this many gaps (4 values pairwise apart need room)
TRIES = 200       # draws of a distractor set before a question is given up
_NORMAL = NormalDist()
_DECIMALS = re.compile(r"[-+]?\d*\.(\d+)")


def tolerance(task):
    if task in verify.PROPERTIES:
        return verify.PROPERTIES[task][1]
    return verify.HOMOLUMO_TOL if task == "homolumo" else verify.YIELD_TOL


def population_key(task, prompt):
    """homolumo asks for the HOMO, the LUMO or the gap (three label populations); every other task is one."""
    if task != "homolumo":
        return task
    text = str(prompt)
    return "homolumo/gap" if "gap" in text else "homolumo/lumo" if "LUMO" in text else "homolumo/homo"


def decimals(text, default=2):
    m = _DECIMALS.search(str(text))
    return len(m.group(1)) if m else default


def truths(task, prompt, answer):
    """-> ([true values], the right option's text), or None (no molecule, no number, or the label unverifiable).
    weight / tpsa / logp: rdkit's values for the prompt's molecule (tpsa: both variants verify.py accepts)."""
    label = answers.first_number(str(answer))
    if task in verify.PROPERTIES:
        mol, _ = answers.parse_molecule(answers.prompt_molecule(prompt) or "")
        if mol is None:
            return None
        values = [float(v) for v in verify.PROPERTIES[task][0](mol)]
        if label is not None and verify.verify(task, prompt, str(answer), str(answer)).score == 1:
            return values, str(answer).strip()
        return values, f"{values[0]:.{decimals(answer)}f}"
    if label is None:
        return None
    return [label], str(answer).strip()


class Population:
    """An empirical distribution: z(x) = Phi^-1 of the mid-rank CDF, x(z) its inverse (linear between labels)."""

    def __init__(self, values):
        self.x = np.sort(np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float))
        n = len(self.x)
        self.p = (np.arange(n) + 0.5) / n if n else np.zeros(0)
        self.sd = float(np.std(self.x)) if n else 0.0

    def __len__(self):
        return len(self.x)

    def z(self, value):
        p = float(np.interp(value, self.x, self.p))
        return _NORMAL.inv_cdf(min(max(p, 0.5 / len(self)), 1 - 0.5 / len(self)))

    def value(self, z):
        return float(np.interp(_NORMAL.cdf(z), self.p, self.x))


def options(task, prompt, answer, population, rng, n):
    """n distractor texts for the right option `answer` (truths()'s text), drawn as the module docstring says;
    [] when the population is too small or TRIES draws never give n values far enough from the truth and from
    each other. Deterministic in rng."""
    got = truths(task, prompt, answer)
    if got is None or len(population) < 2 * (n + 1):
        return []
    values, text = got
    tol, places = tolerance(task), decimals(text)
    right = answers.first_number(text)
    za = population.z(right)
    tau = min(max(TAU, SPREAD_GAPS * GAP_TOL * tol / population.sd if population.sd else TAU), MAX_TAU)
    shrink = 1.0 - tau ** 2
    for _ in range(TRIES):
        c = rng.normal(shrink * za, np.sqrt(shrink) * tau)
        draws = [round(population.value(c + tau * e), places) for e in rng.normal(size=n)]
        opts = [right] + draws
        if any(abs(d - v) <= GAP_TOL * tol for d in draws for v in values):
            continue
        if any(abs(a - b) <= GAP_TOL * tol for i, a in enumerate(opts) for b in opts[i + 1:]):
            continue
        out = [f"{d:.{places}f}" for d in draws]
        if all(verify.verify(task, prompt, o, text).score == 0 for o in out):
            return out
    return []
