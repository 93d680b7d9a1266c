"""Ready-made products: a 4-site ADC in full-datalog mode and an 8-site PMIC in production flow."""

from __future__ import annotations

from .product import Bin, DefectModel, FunctionalTest, MultiPinTest, ParametricTest, ProductSpec

DEFAULT_PRODUCT = ProductSpec(
    name="YO-7NM-ADC",
    process_id="N7",
    wafer_size_mm=300.0,
    dies_across=40,
    site_layout=(2, 2),
    hard_bins=(
        Bin(1, "PASS", good=True),
        Bin(2, "FUNCTIONAL"),
        Bin(3, "LEAKAGE"),
        Bin(4, "ADC_PARAMETRIC"),
        Bin(5, "CONTINUITY"),
        Bin(6, "POWER"),
    ),
    tests=(
        MultiPinTest(
            test_num=100, name="CONT_SIGNAL_PINS", units="V", lo_limit=-0.9, hi_limit=-0.3,
            mean=-0.62, sigma=0.03, fault_rate=0.004, open_value=-1.5, short_value=-0.02,
            pins=("AIN_P", "AIN_N", "VREF", "CLK", "CS_N", "SCLK", "SDI", "SDO"),
            hard_bin=5, soft_bin=50, time_ms=4.0,
        ),
        # Early, cheap monitors: datalogged, never binned; they only correlate with the outcome.
        ParametricTest(
            test_num=1000, name="CONTACT_RES", units="ohm", lo_limit=0.0, hi_limit=25.0,
            mean=4.0, sigma=0.5, site_gain=0.4, time_ms=0.5,
        ),
        ParametricTest(
            test_num=1001, name="IDDQ_PRE", units="uA", lo_limit=0.0, hi_limit=200.0,
            mean=0.8, sigma=0.35, lognormal=True, edge_gain=5.0, defect_gain=1.2, time_ms=1.0,
        ),
        ParametricTest(
            test_num=1002, name="IIL_AIN", units="nA", lo_limit=0.0, hi_limit=500.0,
            mean=6.0, sigma=0.4, lognormal=True, edge_gain=1.0, defect_gain=0.8, time_ms=1.0,
        ),
        ParametricTest(
            test_num=1003, name="RO_FREQ", units="MHz", lo_limit=600.0, hi_limit=1000.0,
            mean=812.0, sigma=9.0, process_gain=-1.0, time_ms=0.5,
        ),
        ParametricTest(
            test_num=1004, name="VBG_REF", units="V", lo_limit=1.1, hi_limit=1.3,
            mean=1.2, sigma=0.004, process_gain=0.6, time_ms=0.5,
        ),
        ParametricTest(
            test_num=1005, name="VOH_SDO", units="V", lo_limit=1.5, hi_limit=1.9,
            mean=1.74, sigma=0.012, process_gain=-0.4, edge_gain=-0.5, time_ms=0.5,
        ),
        ParametricTest(
            test_num=1006, name="TEMP_DIODE", units="mV", lo_limit=550.0, hi_limit=750.0,
            mean=650.0, sigma=2.5, time_ms=0.5,
        ),
        # Label-defining: the first of these a die fails decides its bin.
        ParametricTest(
            test_num=2000, name="IDDQ_STATIC", units="uA", lo_limit=0.0, hi_limit=8.0,
            mean=2.0, sigma=0.35, lognormal=True, edge_gain=6.0, defect_gain=1.6,
            hard_bin=3, soft_bin=30, time_ms=5.0,
        ),
        ParametricTest(
            test_num=2001, name="IDD_ACTIVE", units="mA", lo_limit=12.2, hi_limit=15.8,
            mean=14.0, sigma=0.45, process_gain=0.4, defect_gain=0.3,
            hard_bin=6, soft_bin=60, time_ms=3.0,
        ),
        FunctionalTest(
            test_num=3000, name="FUNC_SCAN", pattern="scan_atpg_v3", base_fail=0.004,
            defect_kill=0.9, hard_bin=2, soft_bin=20, time_ms=18.0,
        ),
        FunctionalTest(
            test_num=3001, name="FUNC_MBIST", pattern="mbist_march_c", base_fail=0.003,
            defect_kill=0.5, hard_bin=2, soft_bin=21, time_ms=12.0,
        ),
        ParametricTest(
            test_num=4000, name="ADC_OFFSET", units="mV", lo_limit=-3.0, hi_limit=3.0,
            mean=0.0, sigma=0.8, process_gain=1.0, hard_bin=4, soft_bin=40, time_ms=25.0,
        ),
        ParametricTest(
            test_num=4001, name="ADC_GAIN_ERR", units="%", lo_limit=-0.5, hi_limit=0.5,
            mean=0.02, sigma=0.12, process_gain=0.2, hard_bin=4, soft_bin=41, time_ms=25.0,
        ),
        ParametricTest(
            test_num=4002, name="ADC_INL", units="LSB", lo_limit=0.0, hi_limit=1.0,
            mean=0.45, sigma=0.09, defect_gain=0.8, hard_bin=4, soft_bin=42, time_ms=40.0,
        ),
        ParametricTest(
            test_num=4003, name="ADC_DNL", units="LSB", lo_limit=0.0, hi_limit=0.6,
            mean=0.25, sigma=0.06, defect_gain=0.5, hard_bin=4, soft_bin=43, time_ms=40.0,
        ),
        ParametricTest(
            test_num=4004, name="ADC_SNR", units="dB", lo_limit=68.0, hi_limit=80.0,
            mean=71.5, sigma=0.6, defect_gain=-0.9, hard_bin=4, soft_bin=44, time_ms=30.0,
        ),
    ),
)  # fmt: skip

PMIC_PRODUCT = ProductSpec(
    name="YO-28NM-PMIC",
    process_id="N28",
    wafer_size_mm=200.0,
    dies_across=38,
    site_layout=(4, 2),
    stop_on_fail=True,
    defects=DefectModel(edge_onset=0.8, clusters_per_wafer=1.5, random_defect_rate=0.03),
    hard_bins=(
        Bin(1, "PASS", good=True),
        Bin(2, "FUNCTIONAL"),
        Bin(3, "LEAKAGE"),
        Bin(4, "REGULATION"),
        Bin(5, "CONTINUITY"),
        Bin(6, "POWER_STAGE"),
    ),
    tests=(
        MultiPinTest(
            test_num=100, name="CONT_POWER_PINS", units="V", lo_limit=-0.95, hi_limit=-0.35,
            mean=-0.65, sigma=0.035, fault_rate=0.006, open_value=-1.6, short_value=-0.01,
            pins=("VIN", "SW", "FB", "EN", "PGOOD", "VOUT"),
            hard_bin=5, soft_bin=50, time_ms=3.0,
        ),
        ParametricTest(
            test_num=1000, name="IQ_QUICK", units="uA", lo_limit=0.0, hi_limit=2000.0,
            mean=25.0, sigma=0.3, lognormal=True, edge_gain=4.0, defect_gain=1.0, time_ms=1.0,
        ),
        ParametricTest(
            test_num=1001, name="VREF_PRETRIM", units="V", lo_limit=0.55, hi_limit=0.65,
            mean=0.6, sigma=0.003, process_gain=1.0, time_ms=0.5,
        ),
        ParametricTest(
            test_num=1002, name="OSC_FREQ", units="kHz", lo_limit=1800.0, hi_limit=2600.0,
            mean=2200.0, sigma=20.0, process_gain=-0.8, time_ms=0.5,
        ),
        ParametricTest(
            test_num=2000, name="ISHDN", units="uA", lo_limit=0.0, hi_limit=1.0,
            mean=0.15, sigma=0.4, lognormal=True, edge_gain=6.5, defect_gain=1.5,
            hard_bin=3, soft_bin=30, time_ms=4.0,
        ),
        FunctionalTest(
            test_num=3000, name="FUNC_DIGITAL", pattern="i2c_regs_v2", base_fail=0.003,
            defect_kill=0.8, hard_bin=2, soft_bin=20, time_ms=10.0,
        ),
        ParametricTest(
            test_num=4000, name="VOUT_REG", units="V", lo_limit=1.176, hi_limit=1.224,
            mean=1.2, sigma=0.006, process_gain=1.0, hard_bin=4, soft_bin=40, time_ms=8.0,
        ),
        ParametricTest(
            test_num=4001, name="LOAD_REG", units="mV/A", lo_limit=0.0, hi_limit=12.0,
            mean=6.0, sigma=1.2, defect_gain=0.6, hard_bin=4, soft_bin=41, time_ms=12.0,
        ),
        ParametricTest(
            test_num=4002, name="UVLO_RISE", units="V", lo_limit=2.55, hi_limit=2.85,
            mean=2.7, sigma=0.025, process_gain=0.5, hard_bin=4, soft_bin=42, time_ms=6.0,
        ),
        ParametricTest(
            test_num=4003, name="RDSON_HS", units="mohm", lo_limit=30.0, hi_limit=60.0,
            mean=44.0, sigma=1.8, process_gain=0.4, edge_gain=1.0,
            hard_bin=6, soft_bin=60, time_ms=6.0,
        ),
    ),
)  # fmt: skip

PRODUCTS: dict[str, ProductSpec] = {p.name: p for p in (DEFAULT_PRODUCT, PMIC_PRODUCT)}
