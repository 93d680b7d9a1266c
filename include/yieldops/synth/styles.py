"""Tester styles: how a tester family writes its STDF files, as seen in real ones.

The synthetic fab decides what each die measures (``synth.fab``); a style decides how the
file says it: which MIR fields are filled, which records are there at all, how sites and
heads interleave, whether a test's name and limits come on every record or only the
first, and how the summaries look. Each style also brings a test program written in its
tester's idiom (``synth.catalog``): the product ``synthesize`` uses by default with it.

The habits come from the real files in ``../shared/stdf-samples`` (see its README) and
the STDF V4 specification:

- ``smartest`` (Advantest 93000, SmarTest 7): MIR PART_TYP empty, the device only in
  JOB_NAM; names ``suite:measurement@pin[1]`` on every record (numbers are reused:
  every MPR under ``TEST_NUM 0``), limits on the first; sites from 1, each part written
  in turn (PIR, its results, PRR); empty WAFER_ID; TSR, HBR and SBR per site and for all
  sites (HEAD 255 SITE 0); only bins that occurred; an ATR from the data formatter.
- ``igxl`` (Teradyne IG-XL, IntegraFlex): final test, no WIR/WRR/WCR, no coordinates; four
  sites interleaved test by test; names on every record, limits on the first; FTRs with
  their pattern on every record; BPS/EPS around each touchdown's tests; TSRs only for
  tests that failed; PART_TYP a short part code, not the product's name; no ATR.
- ``envision`` (LTX-Credence enVision, Fusion CX): MIR PART_TYP empty; complete records
  (name, limits, units) every time; path-like names with spaces and ``/``; DTR text after
  the PIRs; TSRs per site only; HBR/SBR list every bin, the tester's reserved ones too,
  with zero counts and no hard bin names; sites from 1; no ATR.
- ``inhouse`` (a fab's own datalogger): no PIR, no MRR; two heads probing two wafers at
  once, their touchdowns interleaved; failing dies retested at the end of the wafer (a
  second PRR at the same x, y); latin-1 text (µA, °C, é) in names, units, bins and MIR.
- ``yo-ate``: the synthetic tester's own habits, the default (what ``synthesize`` wrote
  before styles existed, byte for byte).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .catalog import DEFAULT_PRODUCT, MCU_FINAL_TEST, PLL_SYNTHESIZER, RF_TRANSCEIVER, SENSOR
from .fab import TESTERS
from .product import Bin, ProductSpec

# MIR text fields of the yo-ate style; a style overrides some. Placeholders: {product},
# {part_code}, {process}, {facility}, {node}, {generator_version}.
YO_ATE_MIR: Mapping[str, str] = {
    "MODE_COD": "P", "RTST_COD": "N", "PROT_COD": " ", "CMOD_COD": " ",
    "PART_TYP": "{product}", "NODE_NAM": "{node}", "TSTR_TYP": "YO-ATE",
    "JOB_NAM": "{product}_WS1", "JOB_REV": "1.0", "SBLOT_ID": "", "OPER_NAM": "synth",
    "EXEC_TYP": "yieldops.synth", "EXEC_VER": "{generator_version}", "TEST_COD": "WS1",
    "TST_TEMP": "25", "USER_TXT": "", "AUX_FILE": "", "PKG_TYP": "", "FAMLY_ID": "",
    "DATE_COD": "", "FACIL_ID": "{facility}", "FLOOR_ID": "SORT-A", "PROC_ID": "{process}",
}  # fmt: skip


@dataclass(frozen=True, kw_only=True, eq=False)
class TesterStyle:
    """The habits of one tester family's STDF writer (see the module docstring)."""

    name: str
    product: ProductSpec  # its test program: synthesize's product unless told another
    mir: Mapping[str, str] = field(default_factory=dict)  # overrides of YO_ATE_MIR
    nodes: tuple[str, ...] = TESTERS  # MIR NODE_NAM, by the fab's tester of the lot
    first_site: int = 0  # SITE_NUM of the first site
    heads: int = 1  # test heads probing wafers at the same time, touchdowns interleaved
    final_test: bool = False  # packaged parts: no WIR, WRR or WCR, no die coordinates
    wafer_ids: bool = True  # False: WIR/WRR WAFER_ID empty
    writes_atr: bool = True
    writes_pir: bool = True
    writes_mrr: bool = True
    site_serial: bool = False  # each part's records in turn, not test by test across sites
    names_on_every_record: bool = False  # TEST_TXT on every PTR/MPR/FTR, not the first only
    limits_on_every_record: bool = False  # name, limits and units on every record
    retest_failures: bool = False  # failing dies probed again at the end of the wafer
    part_texts: tuple[str, ...] = ()  # DTRs after each part's PIR; {part_id} is filled
    sections: str | None = None  # BPS SEQ_NAM around each touchdown's tests (with an EPS)
    test_summaries: Literal["lot", "site", "site_and_lot", "failed"] = "lot"
    bin_summaries: Literal["lot", "site_and_lot"] = "lot"
    bins_listed: Literal["program", "used", "program_and_reserved"] = "program"
    reserved_bins: tuple[Bin, ...] = ()  # the tester's own bins, listed with zero counts
    hard_bin_names: bool = True
    summary_site: int = 255  # SITE_NUM of the all-sites TSR, HBR, SBR and PCR (HEAD 255)

    def __post_init__(self) -> None:
        if self.heads < 1:
            raise ValueError(f"tester style {self.name}: heads must be at least 1")

    def check(self, product: ProductSpec) -> None:
        """Refuse a product this style cannot write unambiguously."""
        if product.reuses_test_numbers and not self.names_on_every_record:
            raise ValueError(
                f"{product.name} reuses test numbers: tester style {self.name} names a test "
                "on its first record only, so later records could not be told apart"
            )

    def mir_text(self, **values: str) -> dict[str, str]:
        """The MIR text fields, placeholders filled."""
        return {k: v.format(**values) for k, v in {**YO_ATE_MIR, **self.mir}.items()}


YO_ATE = TesterStyle(name="yo-ate", product=DEFAULT_PRODUCT)

_SMARTEST_MIR: Mapping[str, str] = {
    "PART_TYP": "", "TSTR_TYP": "93000-SOC", "EXEC_TYP": "93000",
    "EXEC_VER": "s/w rev. 7.2.2.0 (T), 23-Jan-14", "JOB_NAM": "{product}_WS_1_0_25C.tpg",
    "JOB_REV": "", "MODE_COD": " ", "OPER_NAM": "prod", "TEST_COD": "", "TST_TEMP": "",
    "FACIL_ID": "", "FLOOR_ID": "", "PROC_ID": "",
}  # fmt: skip
SMARTEST = TesterStyle(
    name="smartest",
    product=RF_TRANSCEIVER,
    mir=_SMARTEST_MIR,
    nodes=("hp93k3", "hp93k5", "hp93k8"),
    first_site=1,
    site_serial=True,
    wafer_ids=False,
    names_on_every_record=True,
    test_summaries="site_and_lot",
    bin_summaries="site_and_lot",
    bins_listed="used",
    summary_site=0,
)

_IGXL_MIR: Mapping[str, str] = {
    "PART_TYP": "{part_code}", "TSTR_TYP": "IntegraFlex", "EXEC_TYP": "IG-XL",
    "EXEC_VER": "5.20.00_flx(P4)", "JOB_NAM": "{product}_FT", "JOB_REV": "050013",
    "SBLOT_ID": "R0", "OPER_NAM": "P0", "TEST_COD": "FT1", "RTST_COD": " ",
    "TST_TEMP": "", "FACIL_ID": "", "FLOOR_ID": "", "PROC_ID": "",
}  # fmt: skip
IGXL = TesterStyle(
    name="igxl",
    product=MCU_FINAL_TEST,
    mir=_IGXL_MIR,
    nodes=("TER82H1", "TER82H2", "TER85H1"),
    final_test=True,
    writes_atr=False,
    names_on_every_record=True,
    sections="Production_Flow",
    test_summaries="failed",
    summary_site=0,
)

_ENVISION_MIR: Mapping[str, str] = {
    "PART_TYP": "", "TSTR_TYP": "Fusion_CX", "EXEC_TYP": "enVision",
    "EXEC_VER": "R15.3.1.P4", "JOB_NAM": "{product}_WS_REVA_PROGRAM", "JOB_REV": "",
    "MODE_COD": " ", "OPER_NAM": "1", "TEST_COD": "", "TST_TEMP": "", "FACIL_ID": "",
    "FLOOR_ID": "", "PROC_ID": "", "DATE_COD": "20250106.0600",
}  # fmt: skip
ENVISION = TesterStyle(
    name="envision",
    product=PLL_SYNTHESIZER,
    mir=_ENVISION_MIR,
    nodes=("fusion-cx-172", "fusion-cx-174", "fusion-cx-181"),
    first_site=1,
    writes_atr=False,
    limits_on_every_record=True,
    names_on_every_record=True,
    part_texts=("TEXT_DATA : S/N : {part_id}", "TEMPERATURE: 25"),
    test_summaries="site",
    bins_listed="program_and_reserved",
    reserved_bins=(
        Bin(96, "ALARM"),
        Bin(97, "TESTER_RESET"),
        Bin(98, "PROGRAM_LOAD_PASS", good=True),
        Bin(99, "PROGRAM_LOAD_FAIL"),
    ),
    hard_bin_names=False,
    summary_site=0,
)

_INHOUSE_MIR: Mapping[str, str] = {
    "TSTR_TYP": "µTS-2", "EXEC_TYP": "banc_test.py", "EXEC_VER": "2.3",
    "JOB_NAM": "{product}_tri_plaquette", "OPER_NAM": "Zoë", "TEST_COD": "TRI",
    "TST_TEMP": "25 °C", "FLOOR_ID": "Salle blanche n°2",
}  # fmt: skip
INHOUSE = TesterStyle(
    name="inhouse",
    product=SENSOR,
    mir=_INHOUSE_MIR,
    nodes=("banc-µts-1", "banc-µts-2"),
    heads=2,
    writes_pir=False,
    writes_mrr=False,
    retest_failures=True,
)

TESTER_STYLES: dict[str, TesterStyle] = {
    s.name: s for s in (YO_ATE, SMARTEST, IGXL, ENVISION, INHOUSE)
}


def resolve_style(style: str | TesterStyle | None) -> TesterStyle:
    """A style by name (None: yo-ate); ValueError names the known ones."""
    if isinstance(style, TesterStyle):
        return style
    if style is None:
        return YO_ATE
    if style not in TESTER_STYLES:
        raise ValueError(
            f"unknown tester style {style!r}: known styles are {', '.join(TESTER_STYLES)}"
        )
    return TESTER_STYLES[style]
