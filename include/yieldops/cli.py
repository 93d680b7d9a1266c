"""The ``yieldops`` command.

Exit codes: 0 success, 1 some input file was bad (each one reported, the
others still processed), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from yieldops.landing.zones import STDF_SUFFIXES

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE = 0, 1, 2
# Where `yieldops demo` and `yieldops run` keep their data unless given --home.
DEMO_HOME, RUN_HOME = Path("var/demo"), Path("var/run")


def stdf_stem(path: Path) -> str:
    """The file name without its STDF and compression suffixes."""
    name = path.name
    for suffix in sorted(STDF_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def file_summary(path: Path) -> dict:
    """Records by type, parts, yield and test setup of one STDF file."""
    from yieldops.features import one_part_per_die, with_wafer_names
    from yieldops.stdf import read_tables, record_counts

    tables = read_tables(path)
    lot = tables["lots"].to_pylist()[0]
    # A die tested again (a retest at the same x, y) counts once, by its last part.
    dies = one_part_per_die(with_wafer_names(tables["parts"].to_pandas().assign(file="")), "last")
    graded = [p for p in dies["passed"].tolist() if p is not None]
    return {
        "file": str(path),
        "lot_id": lot["lot_id"],
        "product": lot["product"],
        "tester": " ".join(filter(None, (lot["tester_type"], lot["tester_node"]))),
        "byte_order": lot["byte_order"],
        "parts": tables["parts"].num_rows,
        "dies": len(dies),
        "good_parts": sum(graded),
        "yield": round(sum(graded) / len(graded), 4) if graded else None,
        "wafers": tables["wafers"].num_rows,
        "tests": tables["tests"].num_rows,
        "results": tables["results"].num_rows,
        "records": record_counts(path),
    }


def _print_summary(summary: dict) -> None:
    yield_text = "n/a" if summary["yield"] is None else f"{summary['yield']:.1%}"
    print(f"{summary['file']}")
    print(
        f"  lot {summary['lot_id']!r}  product {summary['product']!r}  tester {summary['tester']!r}"
    )
    retests = summary["parts"] - summary["dies"]
    parts = f"{summary['parts']} parts" + (f" ({retests} retests)" if retests else "")
    print(
        f"  {parts}, {summary['good_parts']} good ({yield_text}), "
        f"{summary['wafers']} wafers, {summary['tests']} tests, {summary['results']} results, "
        f"{summary['byte_order']}-endian"
    )
    records = "  ".join(f"{name} {count}" for name, count in summary["records"].items())
    print(f"  records: {records}")


def _each_file(paths: Sequence[Path], work: Callable[[Path], None]) -> int:
    """Run ``work`` on every file; a bad file is reported and the rest go on."""
    from yieldops.stdf import StdfError

    failed = 0
    for path in paths:
        try:
            work(path)
        except (StdfError, OSError) as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(paths)} file(s) could not be read", file=sys.stderr)
    return EXIT_BAD_INPUT if failed else EXIT_OK


def cmd_stdf_info(args: argparse.Namespace) -> int:
    def show(path: Path) -> None:
        summary = file_summary(path)
        if args.json:
            print(json.dumps(summary))
        else:
            _print_summary(summary)

    return _each_file(args.files, show)


def convert_file(path: Path, out_dir: Path, show_progress: bool = True) -> dict[str, Path]:
    """Write the curated tables of one file under ``out_dir/<file stem>/``, with a progress bar."""
    from tqdm import tqdm

    from yieldops.stdf import to_parquet

    compressed = path.name.endswith((".gz", ".bz2"))
    total = None if compressed else path.stat().st_size
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=path.name,
        disable=None if show_progress else True,
    ) as bar:
        return to_parquet(
            path, out_dir / stdf_stem(path), progress=lambda done: bar.update(done - bar.n)
        )


def cmd_stdf_convert(args: argparse.Namespace) -> int:
    def convert(path: Path) -> None:
        written = convert_file(path, args.out)
        print(f"{path} -> {written['parts'].parent}/ ({', '.join(sorted(written))})")

    return _each_file(args.files, convert)


def cmd_synth(args: argparse.Namespace) -> int:
    from yieldops.synth import PRODUCTS, synthesize

    paths = synthesize(
        args.out,
        lots=args.lots,
        wafers_per_lot=args.wafers,
        seed=args.seed,
        product=PRODUCTS[args.product] if args.product else None,
        byte_order="<" if args.byte_order == "little" else ">",
        compression=args.compress,
        first_lot=args.first_lot,
        tester_style=args.tester_style,
    )
    for path in paths:
        print(path)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline on a local stack: STDF lots landing -> a champion serving."""
    from yieldops.demo.story import run_demo

    return run_demo(
        args.home,
        lots=args.lots,
        wafers=args.wafers,
        seed=args.seed,
        timeout=args.timeout,
        keep_running=args.keep_running,
    )


def cmd_run(args: argparse.Namespace) -> int:
    """The three DAGs in this process (dag.test) on the given STDF files."""
    from yieldops.demo.inprocess import run_files

    return run_files(args.files, args.home)


def cmd_traffic_replay(args: argparse.Namespace) -> int:
    """Curated dies to a gateway at a steady rate; exit 1 when any request failed."""
    from yieldops.config import product
    from yieldops.serving.replay import load_replay_frame, replay
    from yieldops.settings import load_settings

    curated = args.curated or load_settings().curated_dir
    table = load_replay_frame(curated, product(args.product))
    report = replay(
        args.gateway,
        table.frame,
        table.feature_columns,
        rate_per_s=args.rate,
        batch_size=args.batch,
        limit=args.limit,
        duration_s=args.duration,
    )
    print(json.dumps(report.to_dict()))
    return EXIT_BAD_INPUT if report.failed else EXIT_OK


def cmd_rollout_audit(args: argparse.Namespace) -> int:
    """The rollout audit log, oldest first: one line per record, or JSON lines."""
    from yieldops.rollout.audit import AuditLog

    url, looked = audit_log_url(args.db, args.home)
    if url is None:
        print(
            f"error: no rollout audit log; looked for {', '.join(looked)}. Give the home of a "
            "demo or run (--home DIR, or YIELDOPS_HOME) or the database (--db URL).",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    print(f"rollout audit log: {url}", file=sys.stderr)
    audit = AuditLog(url)
    try:
        filters = {k: v for k, v in (("model", args.model), ("run_id", args.run_id)) if v}
        records = audit.rows(**filters)[-args.last :]
    finally:
        audit.close()
    if not records:
        which = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in filters.items())
        print(f"no records{' of ' + which if which else ''} in it", file=sys.stderr)
    for r in records:
        if args.json:
            print(json.dumps(r, default=str))
            continue
        where = "/".join(p for p in (r["target"], r["step"]) if p) or "-"
        verdict = f" [{r['verdict']}]" if r["verdict"] else ""
        print(
            f"{r['time']:%Y-%m-%d %H:%M:%S}  {r['model']} v{r['version']}  {where}  "
            f"{r['event']}{verdict}  {r['summary']}"
        )
    return EXIT_OK


def audit_log_url(db: str | None, home: Path | None) -> tuple[str | None, list[str]]:
    """The rollout audit log to read (None when there is none) and where it was looked for:
    ``--db``, else YIELDOPS_ROLLOUT_DB_URL, else ``rollout.db`` in ``--home``, else in
    YIELDOPS_HOME, else in the first that has one of: the demo's and the run's default
    homes (in this folder, then in the checkout) and the default data home. A SQLite file
    must already exist: reading never creates a database."""
    from yieldops.layout import checkout_root
    from yieldops.settings import load_settings

    url = db or os.environ.get("YIELDOPS_ROLLOUT_DB_URL")
    if url:
        missing = url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file()
        return (None if missing else url), [url]
    chosen = home or os.environ.get("YIELDOPS_HOME")
    if chosen:
        homes = [Path(chosen)]
    else:
        roots = [Path.cwd(), *filter(None, [checkout_root()])]
        homes = [root / name for root in roots for name in (DEMO_HOME, RUN_HOME)]
        homes.append(load_settings().home)
    files = list(dict.fromkeys(h.resolve() / "rollout.db" for h in homes))
    found = next((f for f in files if f.is_file()), None)
    return (f"sqlite:///{found}" if found else None), [str(f) for f in files]


def cmd_ledger(args: argparse.Namespace) -> int:
    """The ledger of landed files, oldest first: status, landing key, and why (a waiting
    file: what it lacks and when it is looked at again)."""
    from yieldops.landing.ledger import Ledger
    from yieldops.settings import load_settings

    url = args.ledger or (
        f"sqlite:///{Path(args.home).resolve() / 'ledger.db'}"
        if args.home
        else load_settings().ledger_url
    )
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        print(f"error: no ledger at {url} (--home DIR, --ledger URL)", file=sys.stderr)
        return EXIT_BAD_INPUT  # reading never creates a database
    ledger = Ledger(url)
    try:
        entries = ledger.entries(args.status or None)
    finally:
        ledger.close()
    for e in entries:
        print(f"{e.status:<11}  {e.source_key}  {e.reason or e.output or ''}".rstrip())
    return EXIT_OK


def cmd_paths(args: argparse.Namespace) -> int:
    """Airflow's settings for this package's DAGs and plugins, as shell exports."""
    from yieldops.config import config_dir
    from yieldops.layout import dags_folder, plugins_folder

    print(f"export AIRFLOW__CORE__DAGS_FOLDER={shlex.quote(str(dags_folder()))}")
    print(f"export AIRFLOW__CORE__PLUGINS_FOLDER={shlex.quote(str(plugins_folder()))}")
    print(f"export YIELDOPS_CONFIG_DIR={shlex.quote(str(config_dir()))}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Product and target YAML, DAG files and expectation suites: one line per check."""
    from yieldops.checks import format_report, run_checks
    from yieldops.config import config_dir

    results = run_checks(args.dags, args.config or config_dir())
    print(format_report(results))
    return EXIT_BAD_INPUT if any(r.failed for r in results) else EXIT_OK


def cmd_product_init(args: argparse.Namespace) -> int:
    """Profile tester files into products/NAME.yaml, then run its suites on the files."""
    from yieldops.config import config_dir
    from yieldops.product_init import InitRefused, UnusableFile, format_outcome, init_product
    from yieldops.stdf import StdfError

    try:
        outcome = init_product(args.files, args.name, args.config or config_dir(), force=args.force)
    except InitRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (StdfError, UnusableFile, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_outcome(outcome))
    return EXIT_OK if outcome.passed else EXIT_BAD_INPUT


def cmd_curated_migrate(args: argparse.Namespace) -> int:
    """Rewrite curated data from before test identity; say what each folder became."""
    from yieldops.curated.migrate import migrate
    from yieldops.settings import load_settings

    root = args.curated or load_settings().curated_dir
    done = migrate(root)
    for folder in done:
        print(f"migrated {folder.folder}: {folder.tests} tests, {folder.results} results")
        if folder.reused_numbers:
            print(
                f"  test numbers {folder.reused_numbers} have more results on a part than pins: "
                "loops, or several tests under one number, which only ingesting the file again "
                "(stdf_ingest param reprocess_lot) tells apart"
            )
    print(
        f"{len(done)} folder(s) migrated under {root}"
        if done
        else f"nothing to migrate under {root}"
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from yieldops.layout import dags_folder
    from yieldops.synth import PRODUCTS, TESTER_STYLES

    parser = argparse.ArgumentParser(
        prog="yieldops", description="STDF tester data to a validated, deployed yield model."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    stdf = commands.add_parser("stdf", help="read STDF files").add_subparsers(
        dest="stdf_command", required=True
    )
    info = stdf.add_parser("info", help="records, parts, yield and tester of STDF files")
    info.add_argument("files", nargs="+", type=Path)
    info.add_argument("--json", action="store_true", help="one JSON object per file")
    info.set_defaults(run=cmd_stdf_info)
    convert = stdf.add_parser("convert", help="decode STDF files into curated Parquet tables")
    convert.add_argument("files", nargs="+", type=Path)
    convert.add_argument(
        "--out", type=Path, required=True, help="output folder, one subfolder per file"
    )
    convert.set_defaults(run=cmd_stdf_convert)

    synth = commands.add_parser("synth", help="write synthetic lots as STDF files")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--lots", type=int, default=3)
    synth.add_argument("--wafers", type=int, default=2, help="wafers per lot")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--first-lot", type=int, default=0, help="index of the first lot in the series"
    )
    synth.add_argument(
        "--product",
        choices=sorted(PRODUCTS),
        default=None,
        help=f"default: {next(iter(PRODUCTS))}, or the tester style's own test program",
    )
    synth.add_argument(
        "--tester-style",
        choices=sorted(TESTER_STYLES),
        default=None,
        help="write the files as this tester family does: record layout, empty fields, "
        "test naming (yieldops.synth.styles; default yo-ate)",
    )
    synth.add_argument("--byte-order", choices=["little", "big"], default="little")
    synth.add_argument("--compress", choices=["gz", "bz2"], default=None)
    synth.set_defaults(run=cmd_synth)

    traffic = commands.add_parser("traffic", help="traffic for a prediction gateway")
    replay = traffic.add_subparsers(dest="traffic_command", required=True).add_parser(
        "replay", help="send curated dies to a gateway at a given rate"
    )
    replay.add_argument("--gateway", required=True, help="gateway base URL, http://host:port")
    replay.add_argument("--product", required=True)
    replay.add_argument("--curated", type=Path, help="curated dataset (default: from settings)")
    replay.add_argument("--rate", type=float, default=50.0, help="dies per second")
    replay.add_argument("--batch", type=int, default=1, help="dies per request")
    replay.add_argument("--limit", type=int, help="stop after this many dies")
    replay.add_argument("--duration", type=float, help="stop after this many seconds")
    replay.set_defaults(run=cmd_traffic_replay)

    run = commands.add_parser(
        "run", help="ingest, train and roll out given STDF files in this process (no servers)"
    )
    run.add_argument("files", nargs="+", type=Path)
    run.add_argument("--home", type=Path, default=RUN_HOME, help="data and Airflow home")
    run.set_defaults(run=cmd_run)

    rollout = commands.add_parser("rollout", help="model rollouts")
    audit = rollout.add_subparsers(dest="rollout_command", required=True).add_parser(
        "audit", help="routing changes, verdicts and decisions of model_rollout runs"
    )
    audit.add_argument("--model", help="registered model, e.g. yield-YO-7NM-ADC")
    audit.add_argument("--run-id", help="one model_rollout run")
    audit.add_argument("--last", type=int, default=50, help="the newest N records")
    audit.add_argument(
        "--home",
        type=Path,
        help=f"home of a demo or run (default: YIELDOPS_HOME, else the first of {DEMO_HOME}, "
        f"{RUN_HOME} and ~/yieldops-data with an audit log)",
    )
    audit.add_argument("--db", help="audit database URL (default: YIELDOPS_ROLLOUT_DB_URL)")
    audit.add_argument("--json", action="store_true", help="one JSON object per record")
    audit.set_defaults(run=cmd_rollout_audit)

    demo = commands.add_parser(
        "demo", help="the main job on embedded defaults: a local stack, lots landing, a champion"
    )
    demo.add_argument("--home", type=Path, default=DEMO_HOME, help="wiped at start")
    demo.add_argument("--lots", type=int, default=3, help="healthy baseline lots")
    demo.add_argument("--wafers", type=int, default=2, help="wafers per lot")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--timeout", type=float, default=1800, help="seconds for the whole story")
    demo.add_argument("--keep-running", action="store_true", help="leave the stack up until Ctrl-C")
    demo.set_defaults(run=cmd_demo)

    ledger = commands.add_parser(
        "ledger", help="landed files and what became of them (curated, waiting, quarantined, ...)"
    )
    ledger.add_argument(
        "--status",
        action="append",
        help="only files of this status, e.g. waiting (files not complete yet); repeatable",
    )
    ledger.add_argument("--home", type=Path, help="a yieldops home: its ledger.db")
    ledger.add_argument("--ledger", metavar="URL", help="default: YIELDOPS_LEDGER_URL")
    ledger.set_defaults(run=cmd_ledger)

    paths = commands.add_parser(
        "paths",
        help="where this package's DAGs, plugins and YAML are, as Airflow settings "
        '(eval "$(yieldops paths)")',
    )
    paths.set_defaults(run=cmd_paths)

    product = commands.add_parser("product", help="product configurations").add_subparsers(
        dest="product_command", required=True
    )
    init = product.add_parser(
        "init", help="write a product YAML from real tester files and check the files on it"
    )
    init.add_argument("files", nargs="+", type=Path, help="STDF files of one device")
    init.add_argument("--name", required=True, help="the product (curated/<NAME>, yield-<NAME>)")
    init.add_argument(
        "--config",
        type=Path,
        metavar="DIR",
        help="writes DIR/products/NAME.yaml (default: $YIELDOPS_CONFIG_DIR, else include/config)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing NAME.yaml")
    init.set_defaults(run=cmd_product_init)

    curated = commands.add_parser("curated", help="the curated dataset").add_subparsers(
        dest="curated_command", required=True
    )
    migrate = curated.add_parser(
        "migrate", help="rewrite curated data written before test identity (test_id)"
    )
    migrate.add_argument(
        "--curated", type=Path, metavar="DIR", help="default: YIELDOPS_CURATED_DIR"
    )
    migrate.set_defaults(run=cmd_curated_migrate)

    check = commands.add_parser(
        "check", help="before a push: product and target YAML, DAG files, expectation suites"
    )
    check.add_argument(
        "--dags",
        type=Path,
        metavar="DIR",
        default=dags_folder(),
        help="folder of DAG files to import (default: dags/ of this checkout, or the copy "
        "an installed package carries)",
    )
    check.add_argument(
        "--config",
        type=Path,
        metavar="DIR",
        help="folder with products/ and targets.yaml (default: $YIELDOPS_CONFIG_DIR, "
        "else include/config)",
    )
    check.set_defaults(run=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
