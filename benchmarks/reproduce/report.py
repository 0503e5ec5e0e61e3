"""The results table in docs/results.md and the learning-curve plots of the reproduction runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HEADER = ("| estimator | model | K | steps | training wall time | device | test log-likelihood | published | "
          "difference |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def _row(results: dict) -> str:
    test = results["test"]
    figure = f"{test['log_likelihood']:.2f} ± {test['standard_error']:.2f} (k={test['k']}, n={test['n']})"
    headline = results.get("test_headline")
    if headline:
        figure += f"; {headline['log_likelihood']:.2f} ± {headline['standard_error']:.2f} (k={headline['k']})"
    published = results.get("published")
    best = headline or test
    cells = [results["estimator"], results["experiment"], str(results["n_samples"]), f"{results['steps']:,}",
             f"{results['training_seconds_in_loop']:.0f} s", results["device"], figure,
             f"{published:.2f}" if published is not None else "—",
             f"{best['log_likelihood'] - published:+.2f}" if published is not None else "—"]
    return "| " + " | ".join(cells) + " |"


def update_results_table(path: Path, results: dict) -> None:
    """Adds (or replaces) the run's row in its experiment's table, creating the section if needed."""
    start = f"<!-- reproduce {results['experiment']} {results['budget']} start -->"
    end = f"<!-- reproduce {results['experiment']} {results['budget']} end -->"
    text = path.read_text() if path.is_file() else "# Results\n"
    if start not in text:
        budget = results["budget_settings"]
        text = text.rstrip("\n") + (
            f"\n\n### {results['title']}, {results['budget']} budget\n\n"
            f"{budget['steps']:,} steps of batch {budget['batch_size']}, Adam lr {budget['lr']}; test bound with "
            f"k={budget['test_k']} on {budget['test_limit'] or 'all 10,000'} test images"
            + (f" (headline runs also k={budget['headline_test_k']})" if budget.get("headline_test_k") else "")
            + ".\n\n"
            f"{start}\n{HEADER}\n{end}\n\n"
            f"![validation bound against steps and seconds](img/reproduce-{results['experiment']}-"
            f"{results['budget']}.png)\n")
    before, rest = text.split(start, 1)
    table, after = rest.split(end, 1)
    rows = [line for line in table.strip().splitlines()[2:] if line.startswith("|")]
    key = f"| {results['estimator']} | {results['experiment']} | {results['n_samples']} |"
    new = _row(results)
    rows = [new if row.startswith(key) else row for row in rows]
    if new not in rows:
        rows.append(new)
    path.write_text(f"{before}{start}\n{HEADER}\n" + "\n".join(rows) + f"\n{end}{after}")


def plot_experiment(experiment, results: list[dict], path: Path) -> None:
    """Validation bound against steps and against training seconds: a colour per estimator, a line style per K."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (by_steps, by_seconds) = plt.subplots(1, 2, figsize=(12, 6.2), sharey=True)
    estimators = list(dict.fromkeys(result["estimator"] for result in results))
    colours = plt.get_cmap("tab10")
    styles = {1: ":", 5: "--"}  # K=50 (and any other K): solid
    for result in results:
        curve = result["curve"]
        if not curve:
            continue
        style = dict(color=colours(estimators.index(result["estimator"]) % 10), marker="o", markersize=3,
                     linewidth=1.3, linestyle=styles.get(result["n_samples"], "-"),
                     label=f"{result['estimator']}, K={result['n_samples']}")
        by_steps.plot([c["step"] for c in curve], [c["valid_bound"] for c in curve], **style)
        by_seconds.plot([c["seconds"] for c in curve], [c["valid_bound"] for c in curve], **style)
    bounds = [c["valid_bound"] for r in results for c in r["curve"]]
    if bounds:  # the first evaluations of poor estimators can be far below; keep the informative range
        top = max(bounds)
        by_steps.set_ylim(max(min(bounds), top - 80), top + 3)
    by_steps.set_xlabel("training steps")
    by_seconds.set_xlabel("training seconds (validation included)")
    by_steps.set_ylabel("validation bound (nats)")
    for axes in (by_steps, by_seconds):
        axes.grid(alpha=0.3)
    handles, labels = by_steps.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    figure.suptitle(f"{experiment.title} ({results[0]['budget']} budget, {results[0]['device']})", fontsize=10)
    figure.tight_layout(rect=(0, 0.05 + 0.022 * ((len(results) + 3) // 4), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
