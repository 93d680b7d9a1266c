"""STDF V4 record specifications: every record type declared once, as a table.

The reader's compiled decoder, the writer and the tests are all driven by
``RECORDS``; nothing else in the package spells out a record layout, the size of
an STDF type, or what a field's values and flag bits mean (the end of this module).

A field type is an STDF type code (``U1``, ``R4``, ``Cn`` ...) or an array
``kxT`` written as ``("k", count_field, T)``: ``count_field`` names the
earlier field that holds the element count (GDR's generic data, ``Vn``, its
count of items).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Scalar STDF types and their compiled-decoder codes. Order matters only in
# that the codes are stable: kernels switch on them.
U1, U2, U4, U8, I1, I2, I4, I8, R4, R8, C1, B1, N1, CN, BN, DN, VN = range(1, 18)
TYPE_CODES: dict[str, int] = {
    "U1": U1, "U2": U2, "U4": U4, "U8": U8,
    "I1": I1, "I2": I2, "I4": I4, "I8": I8,
    "R4": R4, "R8": R8, "C1": C1, "B1": B1, "N1": N1,
    "Cn": CN, "Bn": BN, "Dn": DN, "Vn": VN,
}  # fmt: skip
FIXED_SIZES: dict[str, int] = {
    "U1": 1, "U2": 2, "U4": 4, "U8": 8, "I1": 1, "I2": 2, "I4": 4, "I8": 8,
    "R4": 4, "R8": 8, "C1": 1, "B1": 1,
    "N1": 1,  # alone (a GDR item) a nibble takes a byte; kxN1 arrays pack two a byte
}  # fmt: skip
# An array field's code is its element code plus ARRAY.
ARRAY = 32
HEADER_SIZE = 4  # every record starts with REC_LEN (U2: the body's bytes), REC_TYP, REC_SUB
MAX_BODY = 0xFFFF  # the largest body a U2 REC_LEN can give
MAX_STRING = 0xFF  # the most bytes of a Cn or Bn: its count is one byte
# The most bytes a variable-length value takes: a count byte (Dn: two, of bits) and the data.
_MAX_VARIABLE_SIZES = {"Cn": 1 + MAX_STRING, "Bn": 1 + MAX_STRING, "Dn": 2 + (0xFFFF + 7) // 8}


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # scalar STDF type; for arrays the element type
    count_field: str | None = None  # set for kxT arrays, and GDR's Vn: its count of items

    @property
    def is_array(self) -> bool:
        return self.count_field is not None and self.type != "Vn"

    @property
    def code(self) -> int:
        return TYPE_CODES[self.type] + (ARRAY if self.is_array else 0)

    @property
    def fixed_size(self) -> int | None:
        return None if self.is_array else FIXED_SIZES.get(self.type)


@dataclass(frozen=True)
class RecordSpec:
    name: str
    typ: int
    sub: int
    fields: tuple[Field, ...]
    # Leading fields without which the record is meaningless; a record shorter
    # than these has an impossible length.
    required: int = 0
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({f.name: i for i, f in enumerate(self.fields)})

    def index(self, name: str) -> int:
        return self._index[name]

    @property
    def min_length(self) -> int:
        """Bytes taken by the required leading fields (all fixed-size)."""
        return sum(f.fixed_size or 0 for f in self.fields[: self.required])

    @property
    def max_length(self) -> int:
        """The most bytes all fields can take: a longer REC_LEN is implausible. Arrays
        counted by a U2 (and GDR's generic data) can fill any body a REC_LEN can give."""
        total = 0
        for f in self.fields:
            size = FIXED_SIZES.get(f.type) or _MAX_VARIABLE_SIZES.get(f.type, MAX_BODY)
            if f.count_field is not None and f.is_array:
                count_type = self.fields[self.index(f.count_field)].type
                count = (1 << (8 * FIXED_SIZES[count_type])) - 1
                size = (count + 1) // 2 if f.type == "N1" else count * size
            total += size
        return min(total, MAX_BODY)

    def fixed_offset(self, name: str) -> int:
        """Byte offset of a field inside the record body; only for fields
        preceded by fixed-size fields."""
        offset = 0
        for f in self.fields:
            if f.name == name:
                return offset
            if f.fixed_size is None:
                raise ValueError(f"{self.name}.{name} follows a variable-length field")
            offset += f.fixed_size
        raise KeyError(name)


def _record(name: str, typ: int, sub: int, layout: str, required: int = 0) -> RecordSpec:
    fields = []
    for item in layout.split():
        fname, ftype = item.split(":")
        if ftype.startswith("k"):
            count_field, elem = ftype[1:].split("*")
            fields.append(Field(fname, elem, count_field))
        else:
            fields.append(Field(fname, ftype))
    return RecordSpec(name, typ, sub, tuple(fields), required)


# Layouts follow the STDF V4 specification. Arrays read "NAME:kCOUNT*TYPE".
RECORDS: dict[str, RecordSpec] = {
    r.name: r
    for r in (
        _record("FAR", 0, 10, "CPU_TYPE:U1 STDF_VER:U1", required=2),
        _record("ATR", 0, 20, "MOD_TIM:U4 CMD_LINE:Cn"),
        _record(
            "MIR", 1, 10,
            "SETUP_T:U4 START_T:U4 STAT_NUM:U1 MODE_COD:C1 RTST_COD:C1 PROT_COD:C1 "
            "BURN_TIM:U2 CMOD_COD:C1 LOT_ID:Cn PART_TYP:Cn NODE_NAM:Cn TSTR_TYP:Cn "
            "JOB_NAM:Cn JOB_REV:Cn SBLOT_ID:Cn OPER_NAM:Cn EXEC_TYP:Cn EXEC_VER:Cn "
            "TEST_COD:Cn TST_TEMP:Cn USER_TXT:Cn AUX_FILE:Cn PKG_TYP:Cn FAMLY_ID:Cn "
            "DATE_COD:Cn FACIL_ID:Cn FLOOR_ID:Cn PROC_ID:Cn OPER_FRQ:Cn SPEC_NAM:Cn "
            "SPEC_VER:Cn FLOW_ID:Cn SETUP_ID:Cn DSGN_REV:Cn ENG_ID:Cn ROM_COD:Cn "
            "SERL_NUM:Cn SUPR_NAM:Cn",
        ),
        _record("MRR", 1, 20, "FINISH_T:U4 DISP_COD:C1 USR_DESC:Cn EXC_DESC:Cn"),
        _record(
            "PCR", 1, 30,
            "HEAD_NUM:U1 SITE_NUM:U1 PART_CNT:U4 RTST_CNT:U4 ABRT_CNT:U4 GOOD_CNT:U4 "
            "FUNC_CNT:U4",
        ),
        _record(
            "HBR", 1, 40,
            "HEAD_NUM:U1 SITE_NUM:U1 HBIN_NUM:U2 HBIN_CNT:U4 HBIN_PF:C1 HBIN_NAM:Cn",
        ),
        _record(
            "SBR", 1, 50,
            "HEAD_NUM:U1 SITE_NUM:U1 SBIN_NUM:U2 SBIN_CNT:U4 SBIN_PF:C1 SBIN_NAM:Cn",
        ),
        _record(
            "PMR", 1, 60,
            "PMR_INDX:U2 CHAN_TYP:U2 CHAN_NAM:Cn PHY_NAM:Cn LOG_NAM:Cn HEAD_NUM:U1 SITE_NUM:U1",
        ),
        _record("PGR", 1, 62, "GRP_INDX:U2 GRP_NAM:Cn INDX_CNT:U2 PMR_INDX:kINDX_CNT*U2"),
        _record(
            "PLR", 1, 63,
            "GRP_CNT:U2 GRP_INDX:kGRP_CNT*U2 GRP_MODE:kGRP_CNT*U2 GRP_RADX:kGRP_CNT*U1 "
            "PGM_CHAR:kGRP_CNT*Cn RTN_CHAR:kGRP_CNT*Cn PGM_CHAL:kGRP_CNT*Cn "
            "RTN_CHAL:kGRP_CNT*Cn",
        ),
        _record("RDR", 1, 70, "NUM_BINS:U2 RTST_BIN:kNUM_BINS*U2"),
        _record(
            "SDR", 1, 80,
            "HEAD_NUM:U1 SITE_GRP:U1 SITE_CNT:U1 SITE_NUM:kSITE_CNT*U1 HAND_TYP:Cn HAND_ID:Cn "
            "CARD_TYP:Cn CARD_ID:Cn LOAD_TYP:Cn LOAD_ID:Cn DIB_TYP:Cn DIB_ID:Cn CABL_TYP:Cn "
            "CABL_ID:Cn CONT_TYP:Cn CONT_ID:Cn LASR_TYP:Cn LASR_ID:Cn EXTR_TYP:Cn EXTR_ID:Cn",
        ),
        _record("WIR", 2, 10, "HEAD_NUM:U1 SITE_GRP:U1 START_T:U4 WAFER_ID:Cn", required=1),
        _record(
            "WRR", 2, 20,
            "HEAD_NUM:U1 SITE_GRP:U1 FINISH_T:U4 PART_CNT:U4 RTST_CNT:U4 ABRT_CNT:U4 "
            "GOOD_CNT:U4 FUNC_CNT:U4 WAFER_ID:Cn FABWF_ID:Cn FRAME_ID:Cn MASK_ID:Cn "
            "USR_DESC:Cn EXC_DESC:Cn",
            required=1,
        ),
        _record(
            "WCR", 2, 30,
            "WAFR_SIZ:R4 DIE_HT:R4 DIE_WID:R4 WF_UNITS:U1 WF_FLAT:C1 CENTER_X:I2 CENTER_Y:I2 "
            "POS_X:C1 POS_Y:C1",
        ),
        _record("PIR", 5, 10, "HEAD_NUM:U1 SITE_NUM:U1", required=2),
        _record(
            "PRR", 5, 20,
            "HEAD_NUM:U1 SITE_NUM:U1 PART_FLG:B1 NUM_TEST:U2 HARD_BIN:U2 SOFT_BIN:U2 "
            "X_COORD:I2 Y_COORD:I2 TEST_T:U4 PART_ID:Cn PART_TXT:Cn PART_FIX:Bn",
            required=2,
        ),
        _record(
            "TSR", 10, 30,
            "HEAD_NUM:U1 SITE_NUM:U1 TEST_TYP:C1 TEST_NUM:U4 EXEC_CNT:U4 FAIL_CNT:U4 "
            "ALRM_CNT:U4 TEST_NAM:Cn SEQ_NAME:Cn TEST_LBL:Cn OPT_FLAG:B1 TEST_TIM:R4 "
            "TEST_MIN:R4 TEST_MAX:R4 TST_SUMS:R4 TST_SQRS:R4",
            required=4,
        ),
        _record(
            "PTR", 15, 10,
            "TEST_NUM:U4 HEAD_NUM:U1 SITE_NUM:U1 TEST_FLG:B1 PARM_FLG:B1 RESULT:R4 "
            "TEST_TXT:Cn ALARM_ID:Cn OPT_FLAG:B1 RES_SCAL:I1 LLM_SCAL:I1 HLM_SCAL:I1 "
            "LO_LIMIT:R4 HI_LIMIT:R4 UNITS:Cn C_RESFMT:Cn C_LLMFMT:Cn C_HLMFMT:Cn "
            "LO_SPEC:R4 HI_SPEC:R4",
            required=3,
        ),
        _record(
            "MPR", 15, 15,
            "TEST_NUM:U4 HEAD_NUM:U1 SITE_NUM:U1 TEST_FLG:B1 PARM_FLG:B1 RTN_ICNT:U2 "
            "RSLT_CNT:U2 RTN_STAT:kRTN_ICNT*N1 RTN_RSLT:kRSLT_CNT*R4 TEST_TXT:Cn ALARM_ID:Cn "
            "OPT_FLAG:B1 RES_SCAL:I1 LLM_SCAL:I1 HLM_SCAL:I1 LO_LIMIT:R4 HI_LIMIT:R4 "
            "START_IN:R4 INCR_IN:R4 RTN_INDX:kRTN_ICNT*U2 UNITS:Cn UNITS_IN:Cn C_RESFMT:Cn "
            "C_LLMFMT:Cn C_HLMFMT:Cn LO_SPEC:R4 HI_SPEC:R4",
            required=3,
        ),
        _record(
            "FTR", 15, 20,
            "TEST_NUM:U4 HEAD_NUM:U1 SITE_NUM:U1 TEST_FLG:B1 OPT_FLAG:B1 CYCL_CNT:U4 "
            "REL_VADR:U4 REPT_CNT:U4 NUM_FAIL:U4 XFAIL_AD:I4 YFAIL_AD:I4 VECT_OFF:I2 "
            "RTN_ICNT:U2 PGM_ICNT:U2 RTN_INDX:kRTN_ICNT*U2 RTN_STAT:kRTN_ICNT*N1 "
            "PGM_INDX:kPGM_ICNT*U2 PGM_STAT:kPGM_ICNT*N1 FAIL_PIN:Dn VECT_NAM:Cn TIME_SET:Cn "
            "OP_CODE:Cn TEST_TXT:Cn ALARM_ID:Cn PROG_TXT:Cn RSLT_TXT:Cn PATG_NUM:U1 SPIN_MAP:Dn",
            required=3,
        ),
        _record("BPS", 20, 10, "SEQ_NAME:Cn"),
        _record("EPS", 20, 20, ""),
        _record("GDR", 50, 10, "FLD_CNT:U2 GEN_DATA:kFLD_CNT*Vn"),
        _record("DTR", 50, 30, "TEXT_DAT:Cn"),
    )
}  # fmt: skip

BY_TYPE: dict[tuple[int, int], RecordSpec] = {(r.typ, r.sub): r for r in RECORDS.values()}

# Record types that are counted and skipped, not decoded: those STDF V4-2007 added, and
# those of its Memory Fail Datalog extension (as the Semi-ATE STDF library lists them).
V4_2007_RECORDS: dict[tuple[int, int], str] = {
    (0, 30): "VUR", (1, 90): "PSR", (1, 91): "NMR", (1, 92): "CNR", (1, 93): "SSR",
    (1, 94): "CDR", (15, 30): "STR",
}  # fmt: skip
MEMORY_RECORDS: dict[tuple[int, int], str] = {
    (1, 95): "ASR", (1, 96): "FSR", (1, 97): "BSR", (1, 99): "MSR", (1, 100): "MCR",
    (1, 101): "IDR", (1, 102): "MMR", (15, 40): "MTR",
}  # fmt: skip
# The REC_TYP groups STDF V4 reserves for others' software, every REC_SUB of them. Any
# other record type is undefined: a reader that meets one has lost the record boundaries.
RESERVED_TYPES: dict[int, str] = {180: "IMAGE", 181: "IG900"}
SKIPPED_WHY: dict[str, str] = {
    **dict.fromkeys(V4_2007_RECORDS.values(), "an STDF V4-2007 record"),
    **dict.fromkeys(MEMORY_RECORDS.values(), "an STDF Memory Fail Datalog record"),
    "IMAGE": "REC_TYP 180, reserved for Image software",
    "IG900": "REC_TYP 181, reserved for IG900 software",
}

# GDR's Vn field: a type code byte then a value; code -> STDF type (0 is a pad byte).
VN_TYPES: dict[int, str] = {
    0: "B0", 1: "U1", 2: "U2", 3: "U4", 4: "I1", 5: "I2", 6: "I4", 7: "R4", 8: "R8",
    10: "Cn", 11: "Bn", 12: "Dn", 13: "N1",
}  # fmt: skip

# -- What some field values mean ------------------------------------------------------------

CPU_BIG_ENDIAN, CPU_LITTLE_ENDIAN = 1, 2  # FAR CPU_TYPE: the byte orders this package knows
STDF_VERSION = 4  # FAR STDF_VER
ALL_HEADS = 255  # HEAD_NUM of a record for all heads and sites (summary TSR, HBR, SBR, PCR)
# Values that say "not given".
MISSING_U4 = 0xFFFFFFFF  # a U4 count (WRR, PCR, TSR)
MISSING_SOFT_BIN = 0xFFFF  # PRR SOFT_BIN
MISSING_COORDINATE = -32768  # PRR X_COORD, Y_COORD (final test: no die position)

# PRR PART_FLG
PART_FAILED = 0x08  # bit 3: the part failed
PART_VERDICT_INVALID = 0x10  # bit 4: bit 3 says nothing
# PTR, MPR, FTR TEST_FLG
TEST_FAILED = 0x80  # bit 7
TEST_NO_VERDICT = 0x70  # bits 4, 5, 6: not executed, aborted, no pass/fail indication
# PTR, MPR PARM_FLG
PARM_ABOVE_HIGH, PARM_BELOW_LOW = 0x08, 0x10  # bits 3, 4: the result is past that limit
PARM_LIMITS_INCLUSIVE = 0xC0  # bits 6, 7: a result equal to a limit passes
# PTR, MPR OPT_FLAG: a set bit says a field is not valid.
OPT_NO_RES_SCAL = 0x01  # bit 0
OPT_RESERVED = 0x02  # bit 1: reserved, always set
OPT_NO_LO_SPEC, OPT_NO_HI_SPEC = 0x04, 0x08  # bits 2, 3
OPT_NO_LO_LIMIT = 0x50  # bit 4: LO_LIMIT and LLM_SCAL not valid; bit 6: no low limit
OPT_NO_HI_LIMIT = 0xA0  # bit 5: HI_LIMIT and HLM_SCAL not valid; bit 7: no high limit
OPT_LIMITS_ONLY = OPT_RESERVED | OPT_NO_LO_SPEC | OPT_NO_HI_SPEC  # scales and limits valid
FTR_OPT_NOTHING_VALID = 0xFF  # FTR OPT_FLAG: none of its optional counts is valid
# TSR OPT_FLAG: all statistics valid, or only TEST_TIM (TEST_MIN, TEST_MAX, TST_SUMS and
# TST_SQRS not).
TSR_OPT_ALL_VALID, TSR_OPT_ONLY_TIME = 0x00, 0x33
PIN_FAILED_LOW, PIN_FAILED_HIGH = 5, 6  # MPR RTN_STAT states
BIN_PASS, BIN_FAIL = "P", "F"  # HBR HBIN_PF, SBR SBIN_PF

# The records of test results, and those of them that are measurements (FTR: pass/fail).
RESULT_RECORDS = ("PTR", "MPR", "FTR")
PARAMETRIC_RECORDS = ("PTR", "MPR")
TSR_TEST_RECORDS = {"P": "PTR", "F": "FTR", "M": "MPR"}  # TSR TEST_TYP: the tests' record
