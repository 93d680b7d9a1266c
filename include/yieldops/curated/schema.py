"""Arrow schemas of the curated tables decoded from one STDF file.

Each column is the STDF field its comment names (the README's "The STDF reader" lists
the tables and the records they come from). ``part_index`` is
the part's number within its source file (in PIR order), the key that ties
``results`` to ``parts``. ``test_id`` ties ``results`` to ``tests``: one row per
distinct test of the file (``curated.identity``: number and name, not number alone).
"""

from __future__ import annotations

import pyarrow as pa

TIME = pa.timestamp("s", tz="UTC")

LOTS = pa.schema(
    [
        ("lot_id", pa.string()),
        ("product", pa.string()),  # the product ingest matched (MIR PART_TYP until then)
        ("part_type", pa.string()),  # MIR PART_TYP
        ("family", pa.string()),  # MIR FAMLY_ID
        ("sublot_id", pa.string()),
        ("tester_type", pa.string()),
        ("tester_node", pa.string()),
        ("job_name", pa.string()),
        ("job_rev", pa.string()),
        ("exec_type", pa.string()),
        ("exec_ver", pa.string()),
        ("test_code", pa.string()),
        ("temperature", pa.string()),
        ("facility", pa.string()),
        ("floor", pa.string()),
        ("process", pa.string()),
        ("operator", pa.string()),
        ("mode_code", pa.string()),
        ("setup_time", TIME),
        ("start_time", TIME),
        ("finish_time", TIME),
        ("disposition", pa.string()),
        ("wafer_size", pa.float32()),
        ("die_height", pa.float32()),
        ("die_width", pa.float32()),
        ("wafer_units", pa.uint8()),
        ("wafer_flat", pa.string()),
        ("center_x", pa.int16()),
        ("center_y", pa.int16()),
        ("pos_x", pa.string()),
        ("pos_y", pa.string()),
        ("byte_order", pa.string()),
        ("stdf_version", pa.uint8()),
    ]
)

WAFERS = pa.schema(
    [
        ("wafer_index", pa.int32()),
        ("head", pa.uint8()),
        ("wafer_id", pa.string()),
        ("start_time", TIME),
        ("finish_time", TIME),
        ("part_count", pa.uint32()),
        ("retest_count", pa.uint32()),
        ("abort_count", pa.uint32()),
        ("good_count", pa.uint32()),
        ("functional_count", pa.uint32()),
        ("fab_wafer_id", pa.string()),
        ("frame_id", pa.string()),
        ("mask_id", pa.string()),
    ]
)

PARTS = pa.schema(
    [
        ("part_index", pa.int32()),
        ("lot_id", pa.string()),
        ("wafer_index", pa.int32()),
        ("wafer_id", pa.string()),
        ("head", pa.uint8()),
        ("site", pa.uint8()),
        ("part_id", pa.string()),
        ("x", pa.int16()),
        ("y", pa.int16()),
        ("hard_bin", pa.uint16()),
        ("soft_bin", pa.uint16()),
        ("passed", pa.bool_()),
        ("part_flag", pa.uint8()),
        ("num_tests", pa.uint16()),
        ("test_time_ms", pa.uint32()),
        ("part_text", pa.string()),
    ]
)

TESTS = pa.schema(
    [
        ("test_id", pa.string()),  # see curated.identity: number and name make a test
        ("test_num", pa.uint32()),
        ("record", pa.string()),  # PTR, MPR, FTR (or the TSR test type when only a TSR names it)
        ("test_name", pa.string()),
        ("units", pa.string()),
        ("lo_limit", pa.float32()),
        ("hi_limit", pa.float32()),
        ("lo_spec", pa.float32()),
        ("hi_spec", pa.float32()),
        ("res_scale", pa.int8()),
        ("llm_scale", pa.int8()),
        ("hlm_scale", pa.int8()),
        ("pins", pa.list_(pa.uint16())),  # MPR RTN_INDX of the first record
        ("sequence", pa.string()),  # TSR SEQ_NAME
        ("label", pa.string()),  # TSR TEST_LBL
        ("exec_count", pa.uint32()),
        ("fail_count", pa.uint32()),
        ("test_time", pa.float32()),  # TSR TEST_TIM
    ]
)

RESULTS = pa.schema(
    [
        ("part_index", pa.int32()),
        ("test_num", pa.uint32()),
        ("test_id", pa.dictionary(pa.int32(), pa.string())),
        ("record", pa.dictionary(pa.int8(), pa.string())),
        ("head", pa.uint8()),
        ("site", pa.uint8()),
        ("pin", pa.uint16()),  # MPR: PMR index of the pin; null for PTR and FTR
        ("result", pa.float32()),  # null for FTR
        ("test_flag", pa.uint8()),
        ("parm_flag", pa.uint8()),
        ("passed", pa.bool_()),  # from TEST_FLG; null when the test gave no pass/fail
    ]
)

BINS = pa.schema(
    [
        ("bin_type", pa.string()),  # "hard" (HBR) or "soft" (SBR)
        ("head", pa.uint8()),
        ("site", pa.uint8()),
        ("bin_num", pa.uint16()),
        ("count", pa.uint32()),
        ("pass_fail", pa.string()),
        ("bin_name", pa.string()),
    ]
)

STDF_TABLES: dict[str, pa.Schema] = {
    "lots": LOTS,
    "wafers": WAFERS,
    "parts": PARTS,
    "tests": TESTS,
    "results": RESULTS,
    "bins": BINS,
}
