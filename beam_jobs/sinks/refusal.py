"""A run refused for its dead letters: the verdict, its one-line message, and where its dead letters are kept.

A run publishes nothing when every input was dead-lettered (an empty dataset is no result, so no flag is needed) or
when more than ``--max-bad-fraction`` of them were. The finalize step decides, before anything is staged; it keeps
the run's dead letters where the user can read them (``refused_dir``: ``<output>.refused/``, or ``ROOT/refused/``
for a refresh root) and leaves its message for the launcher in the staging folder (``REFUSED``), so that the
pipeline ends without an error: Beam logs an exception raised in a DoFn with its traceback before the runner
re-raises it, and the command's user should read one line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from apache_beam.io.filesystems import FileSystems

REFUSED = "_REFUSED"  # in the staging folder: the finalize step's message when it refused the run's result
_EXAMPLES = 2
_MESSAGE_CHARS = 120  # an example's message is cut here: the line must stay readable (the file has all of it)


def refused_dir(output: str, refresh: bool = False) -> str:
    """Where a refused run keeps its dead letters: beside ``output``, or in a refresh root (never in a version)."""
    if refresh:
        return FileSystems.join(output.rstrip("/"), "refused")
    return output.rstrip("/") + ".refused"


def verdict(images_in: int, dead_letters: int, max_bad_fraction: float | None) -> tuple[str, str] | None:
    """Why a run's result is refused for its dead letters and what to do, or None when it is not refused.

    No input at all is refused before the run (an empty selection is a user error), so 0 inputs give None here.
    """
    if not images_in:
        return None
    if dead_letters >= images_in:  # checked first: with --max-bad-fraction 1 as without it, nothing is no result
        headline = f"all {images_in} inputs were dead-lettered, so the dataset would be empty"
        return headline, "check that --source (and its format) holds the images you meant, fix them and run again"
    if max_bad_fraction is not None and dead_letters / images_in > max_bad_fraction:
        share = f"{dead_letters} of {images_in} inputs were dead-lettered ({dead_letters / images_in:.1%})"
        advice = "fix or remove those inputs and run again (or allow more with a higher --max-bad-fraction)"
        return f"{share}, over --max-bad-fraction {max_bad_fraction}", advice
    return None


def reasons_text(dead_letters: Iterable[dict]) -> str:
    """The dead letters' reasons with their counts, most common first, and two examples with their messages.

    One pass over ``dead_letters`` (a version's file may be streamed): only the first two of each reason are held.
    Returns "" for none (a version whose dead-letter file is gone).
    """
    counts: Counter[str] = Counter()
    firsts: dict[str, list[dict]] = {}
    for d in dead_letters:
        reason = d.get("reason") or "unknown"
        counts[reason] += 1
        if counts[reason] <= _EXAMPLES:
            firsts.setdefault(reason, []).append(d)
    if not counts:
        return ""
    order = [reason for reason, _ in counts.most_common()]
    # One example of each of the commonest reasons first; a second of the same reason only when there is no other.
    picked = [firsts[r][0] for r in order][:_EXAMPLES]
    picked += [d for r in order for d in firsts[r][1:]][: _EXAMPLES - len(picked)]
    reasons = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
    return f"Reasons: {reasons}; e.g. " + ", ".join(_example(d) for d in picked)


def _example(d: dict) -> str:
    message = " ".join(str(d.get("message") or "").split())  # one line, whatever the error's text held
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 3] + "..."
    return f"{d.get('source_key')} ({d.get('reason')}" + (f": {message})" if message else ")")


def message(refusal: tuple[str, str], dead_letters: Iterable[dict], where: str) -> str:
    """The one line a refused run prints: why, the reasons with examples, where every dead letter is, what to do."""
    headline, advice = refusal
    reasons = reasons_text(dead_letters)
    reasons = f"{reasons}. " if reasons else ""
    return f"{headline}; nothing was published. {reasons}Every dead letter is in {where}: {advice}"


def write_verdict(staging: str, text: str) -> None:
    """Leaves the refusal's message for the launcher in the (otherwise emptied) staging folder."""
    with FileSystems.create(FileSystems.join(staging, REFUSED)) as f:
        f.write(text.encode("utf-8"))


def read_verdict(staging: str) -> str | None:
    """Returns the finalize step's refusal message for this run, or None when it published."""
    path = FileSystems.join(staging, REFUSED)
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")
