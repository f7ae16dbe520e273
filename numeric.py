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
At a hard bound (yield lies in [0, 100]) the tolerance gap breaks that exchangeability: a yield of 0.5 %, with
options more than 10 points from it, can only be the smallest option. On such tasks (BOUNDS) the right value's
rank among the options is drawn first, from the ranks the bound leaves room for (rank r needs r options between
the lower bound and the value, and the rest above it, all more than a gap apart), with per-rank weights fitted
on the label population (rank_weights) so that, over the task, each rank is the right one as often as the
forced ranks allow; then the options are the hierarchical draws above with randomly chosen distractors
mirrored about the right value (the same error on the other side) to put it at that rank, or, where TRIES
draws cannot, values spaced uniformly at random in the room the rank leaves. Measured floor: a label within a
gap of the bound (yields below 10 %: 18 of the demo's 46) is always the smallest option and, written with one
digit fewer than every distractor, the shortest, so on the demo "value" and "length" stay near 0.4-0.45.
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
BOUNDS = {"yield": (0.0, 100.0)}  # tasks whose values lie in a closed range: the answer's rank is drawn first
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


def room(value, low, high, gap, n):
    """The ranks r (options below the value) that [low, high] leaves room for: r options below, n - r above,
    every one more than `gap` from the value and from each other."""
    below, above = (max(int(np.ceil((b - a) / gap)) - 1, 0) for a, b in ((low, value), (value, high)))
    return [r for r in range(n + 1) if r <= below and n - r <= above]


def rank_weights(population, low, high, gap, n, rounds=200):
    """Per-rank weights w (length n + 1) such that drawing a label's rank with P(r) ~ w_r over room()'s ranks
    makes every rank as frequent over the population as the forced ranks allow (iterative proportional
    fitting of the marginal to 1 / (n + 1)). Cached on the population."""
    key = (low, high, gap, n)
    cache = population.__dict__.setdefault("_rank_weights", {})
    if key not in cache:
        rows = [room(float(v), low, high, gap, n) for v in population.x]
        mask = np.array([[r in rs for r in range(n + 1)] for rs in rows if rs], dtype=float)
        w = np.ones(n + 1)
        for _ in range(rounds if len(mask) else 0):
            p = mask * w
            marginal = (p / p.sum(axis=1, keepdims=True)).mean(axis=0)
            w = w * np.where(marginal > 0, 1.0 / (n + 1) / np.maximum(marginal, 1e-12), 1.0)
            w = w / w.sum()
        cache[key] = w
    return cache[key]


def _spaced(low, high, gap, k, rng):
    """k values in [low, high], sorted, consecutive ones more than `gap` apart, uniform over such sets."""
    slack = high - low - (k - 1) * gap
    return [low + u + i * gap for i, u in enumerate(np.sort(rng.uniform(0, slack, size=k)))] if k else []


def _reflect(draws, right, rank, low, high, rng):
    """draws with randomly chosen ones mirrored about the right value (2 * right - d: the same error, the other
    side) so that `rank` of them lie below it, all in [low, high]; None where too few mirror into range."""
    below = [i for i, d in enumerate(draws) if d < right]
    above = [i for i, d in enumerate(draws) if d >= right]
    move, k = (above, rank - len(below)) if rank > len(below) else (below, len(below) - rank)
    can = [i for i in move if low <= 2 * right - draws[i] <= high]
    if len(can) < k:
        return None
    flip = set(rng.permutation(can)[:k].tolist()) if k else set()
    return [2 * right - d if i in flip else d for i, d in enumerate(draws)]


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
    rank, step = None, GAP_TOL * tol + 2 * 10.0 ** -places      # a gap that survives rounding
    if task in BOUNDS:
        low, high = BOUNDS[task]
        ranks = room(right, low, high, step, n)
        if not ranks:
            return []
        w = rank_weights(population, low, high, step, n)[ranks]
        rank = int(rng.choice(ranks, p=w / w.sum())) if w.sum() > 0 else int(rng.choice(ranks))
    for attempt in range(TRIES + 1):
        if attempt < TRIES:
            c = rng.normal(shrink * za, np.sqrt(shrink) * tau)
            draws = [round(population.value(c + tau * e), places) for e in rng.normal(size=n)]
            if rank is not None and (draws := _reflect(draws, right, rank, low, high, rng)) is None:
                continue
        elif rank is not None:                                     # TRIES draws missed the rank: spaced values
            draws = _spaced(low, right - step, step, rank, rng) + _spaced(right + step, high, step, n - rank, rng)
            draws = [round(float(d), places) for d in rng.permutation(draws)]
        else:
            break
        opts = [right] + draws
        if any(abs(d - v) <= GAP_TOL * tol for d in draws for v in values):
            continue
        if any(abs(a - b) <= GAP_TOL * tol for i, a in enumerate(opts) for b in opts[i + 1:]):
            continue
        out = [f"{d:.{places}f}" for d in draws]
        if all(verify.verify(task, prompt, o, text).score == 0 for o in out):
            return out
    return []
