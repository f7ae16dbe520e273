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
draws cannot, values spaced uniformly at random in the room the rank leaves.
A crowded bound: the zone within a gap of it ([0, 10) for yield) holds at most one option of a question, yet
more than 1 / (n + 1) of the labels (demo yields: 18 of 46 test labels below 10). There "the option in the
zone" is the right one whenever the answer lies there, whatever is done; it is right no more often than that
only when EVERY question has an option in the zone. So where the labels crowd a bound (crowded()), a question
whose answer is outside the zone gets one distractor inside it, drawn like the labels there, and its answer is
never at that end's rank. The floor this leaves is the fraction of answers in the zone: the smallest option
(and, for yield, whose zone is exactly the one-digit values, the shortest) is right that often and no more.
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
        return self.quantile(_NORMAL.cdf(z))

    def quantile(self, p):
        return float(np.interp(p, self.p, self.x))

    def below(self, value):
        """The fraction of labels below `value`."""
        return float(np.searchsorted(self.x, value, side="left")) / len(self) if len(self) else 0.0


def room(value, low, high, gap, n):
    """The ranks r (options below the value) that [low, high] leaves room for: r options below, n - r above,
    every one more than `gap` from the value and from each other."""
    below, above = (max(int(np.ceil((b - a) / gap)) - 1, 0) for a, b in ((low, value), (value, high)))
    return [r for r in range(n + 1) if r <= below and n - r <= above]


def fill_rates(asked, low, high, width, n):
    """(floor, ceiling): the probability that a question whose answer lies outside the zone within `width` of
    low (of high) gets a distractor inside it: n f / (1 - f), at most 1, f the share of `asked` (the right
    values of the questions asked) in the zone. Then of the questions with an option in the zone, the answer
    is that option in 1 / (n + 1), as any option is right (see the module docstring)."""
    shares = asked.below(low + width), 1.0 - asked.below(np.nextafter(high - width, high))
    return tuple(min(1.0, n * f / (1.0 - f)) if f < 1 else 1.0 for f in shares)


def ranks_for(value, low, high, gap, n, ends=(False, False)):
    """room()'s ranks, without rank 0 (the value the smallest) where the floor zone is to be filled and without
    rank n where the ceiling zone is, unless that is the only rank there is room for (a value within a gap of
    the bound)."""
    ranks = room(value, low, high, gap, n)
    drop = {r for r, end in ((0, ends[0]), (n, ends[1])) if end}
    return [r for r in ranks if r not in drop] or ranks


def _fill_cases(rates):
    """[((fill floor, fill ceiling), probability)] for the fill rates."""
    return [((a, b), (rates[0] if a else 1 - rates[0]) * (rates[1] if b else 1 - rates[1]))
            for a in (False, True) for b in (False, True)]


def rank_weights(asked, low, high, gap, n, width, rounds=200):
    """Per-rank weights w (length n + 1) such that drawing an answer's rank with P(r) ~ w_r over ranks_for()'s
    ranks (zones filled at fill_rates()) makes every rank as frequent over `asked` (the right values of the
    questions asked) as the forced ranks allow: iterative proportional fitting of the marginal to 1 / (n + 1).
    Cached on `asked`."""
    key = (low, high, gap, n, width)
    cache = asked.__dict__.setdefault("_rank_weights", {})
    if key not in cache:
        rows, weights = [], []
        for v in asked.x:
            for ends, p in _fill_cases(fill_rates(asked, low, high, width, n)):
                if p > 0 and (rs := ranks_for(float(v), low, high, gap, n, ends)):
                    rows.append([r in rs for r in range(n + 1)]), weights.append(p)
        mask, weights = np.array(rows, dtype=float), np.array(weights)[:, None]
        w = np.ones(n + 1)
        for _ in range(rounds if len(mask) else 0):
            p = mask * w
            marginal = (weights * p / p.sum(axis=1, keepdims=True)).sum(axis=0) / weights.sum()
            w = w * np.where(marginal > 0, 1.0 / (n + 1) / np.maximum(marginal, 1e-12), 1.0)
            w = w / w.sum()
        cache[key] = w
    return cache[key]


def _zone_value(population, lo, hi, rng):
    """A value in [lo, hi) drawn like the labels there (uniform where no label lies in it)."""
    p_lo, p_hi = population.below(lo), population.below(hi)
    if p_hi <= p_lo:
        return float(rng.uniform(lo, hi))
    return min(max(population.quantile(rng.uniform(p_lo, p_hi)), lo), np.nextafter(hi, lo))


def _fill_zones(draws, right, step, low, high, width, ends, population, rng, unit):
    """draws with, at each crowded end whose zone holds no option, the outermost draw (on the far side of the
    right value) replaced by one drawn like the labels in the zone, more than `step` from the right value and
    inside the zone once rounded to `unit`."""
    draws = list(draws)
    if ends[0] and right > min(draws) >= low + width:
        hi = min(low + width, right - step) - unit / 2
        draws[int(np.argmin(draws))] = _zone_value(population, low, hi, rng)
    if ends[1] and right < max(draws) <= high - width:
        lo = max(high - width, right + step) + unit / 2
        draws[int(np.argmax(draws))] = _zone_value(population, lo, high, rng)
    return draws


def _spaced(low, high, gap, k, rng):
    """k values in [low, high], sorted, consecutive ones more than `gap` apart, uniform over such sets."""
    slack = high - low - (k - 1) * gap
    return [low + u + i * gap for i, u in enumerate(np.sort(rng.uniform(0, slack, size=k)))] if k else []


def _spaced_at_rank(right, rank, n, low, high, step, width, ends, population, rng, unit):
    """The fallback: `rank` values spaced in [low, right - step] and n - rank in [right + step, high]; at a
    crowded end the outermost one drawn in the zone first (the room ranks_for() left guarantees it fits)."""
    below_lo, above_hi, first, last = low, high, [], []
    if ends[0] and rank and right >= low + width:
        first = [_zone_value(population, low, min(low + width, right - rank * step) - unit / 2, rng)]
        below_lo = first[0] + step
    if ends[1] and rank < n and right <= high - width:
        last = [_zone_value(population, max(high - width, right + (n - rank) * step) + unit / 2, high, rng)]
        above_hi = last[0] - step
    return (first + _spaced(below_lo, right - step, step, rank - len(first), rng)
            + _spaced(right + step, above_hi, step, n - rank - len(last), rng) + last)


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


def options(task, prompt, answer, population, rng, n, asked=None):
    """n distractor texts for the right option `answer` (truths()'s text), drawn as the module docstring says:
    values like `population`'s (the training labels); on a bounded task the answer's rank and the zone fills
    balanced over `asked` (a Population of the right values of all the questions asked; default: population).
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
    rank, step, unit = None, GAP_TOL * tol + 2 * 10.0 ** -places, 10.0 ** -places  # a gap that survives rounding
    if task in BOUNDS:
        low, high = BOUNDS[task]
        asked, width = asked if asked is not None and len(asked) else population, GAP_TOL * tol
        ends = tuple(bool(rng.random() < q) if 0 < q < 1 else q >= 1
                     for q in fill_rates(asked, low, high, width, n))
        ranks = ranks_for(right, low, high, step, n, ends)
        if not ranks:
            return []
        w = rank_weights(asked, low, high, step, n, width)[ranks]
        rank = int(rng.choice(ranks, p=w / w.sum())) if w.sum() > 0 else int(rng.choice(ranks))
    for attempt in range(TRIES + 1):
        if attempt < TRIES:
            c = rng.normal(shrink * za, np.sqrt(shrink) * tau)
            draws = [round(population.value(c + tau * e), places) for e in rng.normal(size=n)]
            if rank is not None:
                if (draws := _reflect(draws, right, rank, low, high, rng)) is None:
                    continue
                draws = _fill_zones(draws, right, step, low, high, width, ends, population, rng, unit)
        elif rank is not None:                                     # TRIES draws missed the rank: spaced values
            draws = _spaced_at_rank(right, rank, n, low, high, step, width, ends, population, rng, unit)
            draws = rng.permutation(draws)
        else:
            break
        draws = [round(float(d), places) for d in draws]
        opts = [right] + draws
        if any(abs(d - v) <= GAP_TOL * tol for d in draws for v in values):
            continue
        if any(abs(a - b) <= GAP_TOL * tol for i, a in enumerate(opts) for b in opts[i + 1:]):
            continue
        out = [f"{d:.{places}f}" for d in draws]
        if all(verify.verify(task, prompt, o, text).score == 0 for o in out):
            return out
    return []
