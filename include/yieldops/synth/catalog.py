"""Ready-made products: a 4-site ADC in full-datalog mode and an 8-site PMIC in production flow
(the configured products), and one test program per tester style (``synth.styles``) written
in that tester's idiom: its test names, its numbering, its mix of PTR, MPR and FTR."""

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

# Advantest 93000 SmarTest: '<test suite>:<measurement>@<pin>[<site group>]' names; every
# multi-pin test under TEST_NUM 0 and pairs of channels under one number (as in the shared
# 93000 wafer file); multi-pin heavy: continuity, leakage and supply currents per pin.
_RF_PINS = ("RF_IN1P", "RF_IN1N", "RF_OUT1P", "RF_OUT1N", "SPI_CLK", "SPI_DI", "SPI_DO", "RSTN")
_SPI_PINS = ("SPI_CLK", "SPI_DI", "SPI_DO", "RSTN")
RF_TRANSCEIVER = ProductSpec(
    name="YO-16NM-RFT",
    process_id="N16",
    wafer_size_mm=300.0,
    dies_across=40,
    site_layout=(2, 1),
    hard_bins=(
        Bin(1, "PASS", good=True),
        Bin(2, "FUNCTIONAL"),
        Bin(3, "IDDQ"),
        Bin(4, "RF"),
        Bin(5, "CONT"),
        Bin(6, "DC"),
    ),
    tests=(
        MultiPinTest(
            test_num=1, stdf_num=0, name="continuity_P:passLimit_uA_mV[1]", units="V",
            lo_limit=0.1, hi_limit=0.8, mean=0.58, sigma=0.03, pins=_RF_PINS, fault_rate=0.004,
            open_value=1.5, short_value=0.02, hard_bin=5, soft_bin=50, time_ms=4.0,
        ),
        MultiPinTest(
            test_num=2, stdf_num=0, name="continuity_N:passLimit_uA_mV[1]", units="V",
            lo_limit=-0.8, hi_limit=-0.1, mean=-0.58, sigma=0.03, pins=_RF_PINS, fault_rate=0.003,
            open_value=-1.5, short_value=-0.02, hard_bin=5, soft_bin=51, time_ms=4.0,
        ),
        MultiPinTest(
            test_num=10, stdf_num=0, name="leakage_IIL:passLimit_uA_mV[1]", units="uA",
            lo_limit=0.0, hi_limit=1e5, mean=0.5, sigma=0.35, lognormal=True, edge_gain=5.0,
            defect_gain=2.0, pins=_SPI_PINS, time_ms=2.0,
        ),
        MultiPinTest(
            test_num=11, stdf_num=0, name="leakage_IIH:passLimit_uA_mV[1]", units="uA",
            lo_limit=0.0, hi_limit=200.0, mean=0.4, sigma=0.4, lognormal=True, edge_gain=1.0,
            defect_gain=0.8, pins=_SPI_PINS, time_ms=2.0,
        ),
        MultiPinTest(
            test_num=12, stdf_num=0, name="Icc_static:passCurrLimit_uA[1]", units="uA",
            lo_limit=0.0, hi_limit=2000.0, mean=30.0, sigma=0.3, lognormal=True, edge_gain=3.0,
            defect_gain=1.0, process_gain=0.3, pins=("VDD_CORE", "VDD_RF", "VDD_IO"), time_ms=2.0,
        ),
        ParametricTest(
            test_num=2100, name="RO_monitor:Freq@RO_OUT[1]", units="MHz", lo_limit=500.0,
            hi_limit=1100.0, mean=800.0, sigma=9.0, process_gain=-1.0, time_ms=0.5,
        ),
        ParametricTest(
            test_num=2110, name="Vbg_trim:Vbg@VREF[1]", units="V", lo_limit=1.1, hi_limit=1.3,
            mean=1.2, sigma=0.004, process_gain=0.6, time_ms=0.5,
        ),
        ParametricTest(
            test_num=3000, name="IDDQ_static:Iddq@VDD_CORE[1]", units="uA", lo_limit=0.0,
            hi_limit=8.0, mean=2.0, sigma=0.35, lognormal=True, edge_gain=6.0, defect_gain=1.6,
            hard_bin=3, soft_bin=30, time_ms=5.0,
        ),
        FunctionalTest(
            test_num=4000, name="scan_chain:FunctionalTest[1]", pattern="scan_atpg_v3",
            base_fail=0.004, defect_kill=0.9, hard_bin=2, soft_bin=20, time_ms=18.0,
        ),
        FunctionalTest(
            test_num=4001, stdf_num=4000, name="mbist:FunctionalTest[1]", pattern="mbist_march_c",
            base_fail=0.003, defect_kill=0.5, hard_bin=2, soft_bin=21, time_ms=12.0,
        ),
        MultiPinTest(
            test_num=5000, stdf_num=0, name="Icc_active:passCurrLimit_uA[1]", units="mA",
            lo_limit=12.2, hi_limit=15.8, mean=14.0, sigma=0.45, process_gain=0.4,
            defect_gain=0.3, pins=("VDD_CORE", "VDD_RF"), hard_bin=6, soft_bin=60, time_ms=3.0,
        ),
        ParametricTest(
            test_num=3251, name="MGC1_Vopp_CH1:Vopp@RF_OUT1P[1]", units="V", lo_limit=0.82,
            hi_limit=0.98, mean=0.9, sigma=0.02, process_gain=1.0, hard_bin=4, soft_bin=40,
            time_ms=20.0,
        ),
        ParametricTest(
            test_num=3252, stdf_num=3251, name="MGC1_Vopp_CH1:Vopp@RF_OUT1N[1]", units="V",
            lo_limit=0.82, hi_limit=0.98, mean=0.9, sigma=0.02, process_gain=0.8, hard_bin=4,
            soft_bin=41, time_ms=20.0,
        ),
        ParametricTest(
            test_num=3171, name="MGC1_Gain_CH1:S21_1GHz@RF_OUT1P[1]", units="dB", lo_limit=15.0,
            hi_limit=20.0, mean=17.5, sigma=0.6, defect_gain=-0.9, hard_bin=4, soft_bin=42,
            time_ms=30.0,
        ),
        ParametricTest(
            test_num=3172, stdf_num=3171, name="MGC1_Gain_CH2:S21_1GHz@RF_OUT2P[1]", units="dB",
            lo_limit=15.0, hi_limit=20.0, mean=17.5, sigma=0.6, defect_gain=-0.9, hard_bin=4,
            soft_bin=43, time_ms=30.0,
        ),
    ),
)  # fmt: skip

# Teradyne IG-XL at final test: CamelCase instance names, six- and seven-digit numbers per
# test block, a production flow that stops on the first fail; functional heavy (a pattern
# per voltage corner, as in the shared IntegraFlex file).
MCU_FINAL_TEST = ProductSpec(
    name="YO-40NM-MCU",
    process_id="N40",
    wafer_size_mm=200.0,
    dies_across=40,
    site_layout=(2, 2),
    stop_on_fail=True,
    hard_bins=(
        Bin(1, "PASSED", good=True),
        Bin(2, "OPENS_SHORTS"),
        Bin(3, "IDDQ"),
        Bin(4, "FUNCTIONAL"),
        Bin(5, "TESTFAIL"),
    ),
    tests=(
        ParametricTest(
            test_num=400000, name="DigContNpa0", units="V", lo_limit=-0.9, hi_limit=-0.3,
            mean=-0.55, sigma=0.03, hard_bin=2, soft_bin=2, time_ms=1.0,
        ),
        ParametricTest(
            test_num=400001, name="DigContNreset", units="V", lo_limit=-0.9, hi_limit=-0.3,
            mean=-0.55, sigma=0.03, hard_bin=2, soft_bin=3, time_ms=1.0,
        ),
        ParametricTest(
            test_num=600000, name="IilPa0Vmax", units="uA", lo_limit=0.0, hi_limit=1e5,
            mean=0.6, sigma=0.35, lognormal=True, edge_gain=5.0, defect_gain=2.5, time_ms=1.0,
        ),
        ParametricTest(
            test_num=600001, name="IihPa0Vmax", units="uA", lo_limit=0.0, hi_limit=1e4,
            mean=0.5, sigma=0.4, lognormal=True, edge_gain=1.0, defect_gain=1.5, time_ms=1.0,
        ),
        ParametricTest(
            test_num=800000, name="VregOutNoLoad", units="V", lo_limit=1.1, hi_limit=1.3,
            mean=1.2, sigma=0.004, process_gain=0.6, time_ms=0.5,
        ),
        ParametricTest(
            test_num=800001, name="OscFreqTrimmed", units="MHz", lo_limit=28.0, hi_limit=36.0,
            mean=32.0, sigma=0.35, process_gain=-1.0, time_ms=0.5,
        ),
        FunctionalTest(
            test_num=1000001, name="PowerUpVmin", pattern="PowerUpV2C", base_fail=0.0005,
            defect_kill=0.3, hard_bin=4, soft_bin=10, time_ms=2.0,
        ),
        FunctionalTest(
            test_num=1000002, name="ScanChainVnom", pattern="MCU_scan_chain", base_fail=0.001,
            defect_kill=0.6, hard_bin=4, soft_bin=11, time_ms=8.0,
        ),
        ParametricTest(
            test_num=700000, name="IddqVnom", units="uA", lo_limit=0.0, hi_limit=8.0, mean=2.0,
            sigma=0.35, lognormal=True, edge_gain=6.0, defect_gain=1.6, hard_bin=3, soft_bin=30,
            time_ms=5.0,
        ),
        FunctionalTest(
            test_num=1000003, name="ScanAtpgVmin", pattern="MCU_scan_atpg_sa", base_fail=0.0015,
            defect_kill=0.9, hard_bin=4, soft_bin=12, time_ms=15.0,
        ),
        FunctionalTest(
            test_num=1000004, name="ScanAtpgVmax", pattern="MCU_scan_atpg_sa", base_fail=0.0005,
            defect_kill=0.4, hard_bin=4, soft_bin=13, time_ms=15.0,
        ),
        FunctionalTest(
            test_num=1000005, name="MbistVmin", pattern="mbist_marchc", base_fail=0.001,
            defect_kill=0.5, hard_bin=4, soft_bin=14, time_ms=10.0,
        ),
        FunctionalTest(
            test_num=1000006, name="MbistVmax", pattern="mbist_marchc", base_fail=0.0005,
            defect_kill=0.3, hard_bin=4, soft_bin=15, time_ms=10.0,
        ),
        FunctionalTest(
            test_num=1000007, name="FlashReadVnom", pattern="flash_rd_ckbd", base_fail=0.001,
            defect_kill=0.4, hard_bin=4, soft_bin=16, time_ms=12.0,
        ),
        FunctionalTest(
            test_num=1000008, name="SpiWriteVnom", pattern="SPIwr", base_fail=0.0005,
            defect_kill=0.2, hard_bin=4, soft_bin=17, time_ms=2.0,
        ),
        FunctionalTest(
            test_num=1000009, name="SpiReadVnom", pattern="SPIrd", base_fail=0.0005,
            defect_kill=0.2, hard_bin=4, soft_bin=18, time_ms=2.0,
        ),
        # Characterisation: datalogged, never bins.
        FunctionalTest(
            test_num=1000010, name="SpiTimingVmin", pattern="SPItest", base_fail=0.005,
            defect_kill=0.3, time_ms=2.0,
        ),
        FunctionalTest(
            test_num=1000011, name="ResetCheck", pattern="ResetCheck", base_fail=0.0005,
            defect_kill=0.1, hard_bin=4, soft_bin=19, time_ms=1.0,
        ),
        ParametricTest(
            test_num=1600032, name="VregLoadReg", units="mV/mA", lo_limit=2.0, hi_limit=10.0,
            mean=6.0, sigma=1.2, process_gain=0.8, hard_bin=5, soft_bin=50, time_ms=6.0,
        ),
        ParametricTest(
            test_num=1600033, name="TxPowerHigh", units="dBm", lo_limit=11.0, hi_limit=15.0,
            mean=13.0, sigma=0.45, process_gain=0.5, defect_gain=-0.6, hard_bin=5, soft_bin=51,
            time_ms=8.0,
        ),
    ),
)  # fmt: skip

# LTX-Credence enVision: path-like names ('<condition>/<test block>/__EV_Block_<n>/<pin>')
# with spaces, '/' and '#', some longer than a column name keeps (as in the shared Fusion CX
# file); results in SI base units (A, Hz).
_OPENS_PINS = ("SPI_DOUT", "SPI_CLK", "SPI_DIN", "ENA_N", "XCVR_IN", "REF_IN", "LOCK_DET", "RST_N")
PLL_SYNTHESIZER = ProductSpec(
    name="YO-65NM-PLL",
    process_id="C65",
    wafer_size_mm=200.0,
    dies_across=40,
    site_layout=(2, 1),
    hard_bins=(
        Bin(1, "PASS", good=True),
        Bin(5, "OPENS"),
        Bin(12, "IDD"),
        Bin(14, "SPI"),
        Bin(33, "PHASE_NOISE"),
        Bin(38, "OUTPUT_POWER"),
        Bin(90, "FUNC_FAIL"),
    ),
    tests=(
        MultiPinTest(
            test_num=10001, name="-100uA/Open_short_tests_ddp/__EV_Block_0", units="V",
            lo_limit=-1.5, hi_limit=-0.05, mean=-0.62, sigma=0.05, pins=_OPENS_PINS,
            fault_rate=0.004, open_value=-1.6, short_value=-0.01, hard_bin=5, soft_bin=5,
            time_ms=3.0,
        ),
        MultiPinTest(
            test_num=10003, name="100uA/Open_short_tests_ddp/__EV_Block_2", units="V",
            lo_limit=0.05, hi_limit=1.5, mean=0.62, sigma=0.05, pins=_OPENS_PINS,
            fault_rate=0.003, open_value=1.6, short_value=0.01, hard_bin=5, soft_bin=6,
            time_ms=3.0,
        ),
        ParametricTest(
            test_num=20001, name="max vdd/IDD_RESET_tests/__EV_Block_0/VDD_CORE", units="A",
            lo_limit=0.0, hi_limit=10.0, mean=0.004, sigma=0.3, lognormal=True, edge_gain=3.0,
            defect_gain=1.5, time_ms=1.0,
        ),
        MultiPinTest(
            test_num=30001, name="1.8V/IIN_tests/__EV_Block_2", units="A", lo_limit=0.0,
            hi_limit=0.01, mean=2e-9, sigma=0.4, lognormal=True, edge_gain=5.0, defect_gain=2.0,
            pins=("SPI_DIN", "SPI_CLK", "ENA_N", "RST_N"), time_ms=2.0,
        ),
        ParametricTest(
            test_num=40012,
            name="# Vtune: 0.50V/reg: 8/VCO:0/SUBBAND:12 / NOM/VTUNE_CURVES/__EV_Block_1/"
            "AUX_PLL_VTUNE",
            units="Hz", lo_limit=2.0e9, hi_limit=2.8e9, mean=2.4e9, sigma=2e7, process_gain=-1.0,
            time_ms=0.5,
        ),
        ParametricTest(
            test_num=40013,
            name="# Vtune: 0.50V/reg: 8/VCO:0/SUBBAND:13 / NOM/VTUNE_CURVES/__EV_Block_1/"
            "AUX_PLL_VTUNE",
            units="Hz", lo_limit=2.0e9, hi_limit=2.8e9, mean=2.45e9, sigma=2e7, process_gain=-0.9,
            time_ms=0.5,
        ),
        ParametricTest(
            test_num=50001, name="nom vdd/REF_TRIM_OUT/__EV_Block_0/VREF_1P2", units="V",
            lo_limit=1.1, hi_limit=1.3, mean=1.2, sigma=0.004, process_gain=0.6, time_ms=0.5,
        ),
        ParametricTest(
            test_num=50002, name="nom vdd/TEMPERATURE_MONITOR/__EV_Block_0/TEMP_SENSE",
            units="=code", lo_limit=0.0, hi_limit=1023.0, mean=512.0, sigma=3.0, time_ms=0.5,
        ),
        ParametricTest(
            test_num=20011, name="max vdd/IDD_STATIC_tests/__EV_Block_1/VDD_CORE", units="A",
            lo_limit=0.0, hi_limit=8e-6, mean=2e-6, sigma=0.35, lognormal=True, edge_gain=6.0,
            defect_gain=1.6, hard_bin=12, soft_bin=12, time_ms=5.0,
        ),
        FunctionalTest(
            test_num=60001,
            name="AUX_MASH_ATPG Func Test Normal Mode - 3.3V VDD/Functional_test/__EV_Block_0",
            pattern="aux_mash_atpg", base_fail=0.004, defect_kill=0.9, hard_bin=90, soft_bin=90,
            time_ms=18.0,
        ),
        FunctionalTest(
            test_num=60002, name="SPI R_W Func Normal Mode/Functional_test/__EV_Block_1",
            pattern="spi_rw_normal", base_fail=0.003, defect_kill=0.5, hard_bin=14, soft_bin=14,
            time_ms=6.0,
        ),
        ParametricTest(
            test_num=70003, name="NOM/OUTPUT_POWER/__EV_Block_3/PA_OUT", units="dBm",
            lo_limit=4.0, hi_limit=8.0, mean=6.0, sigma=0.5, process_gain=1.0, hard_bin=38,
            soft_bin=38, time_ms=25.0,
        ),
        ParametricTest(
            test_num=70010, name="NOM/SYNTHESIZER_PHASE_NOISE/__EV_Block_0/1MHz_OFFSET",
            units="dBc/Hz", lo_limit=-130.0, hi_limit=-106.5, mean=-110.0, sigma=1.0,
            defect_gain=0.9, hard_bin=33, soft_bin=33, time_ms=40.0,
        ),
    ),
)  # fmt: skip

# An in-house tester: a lab datalogger written for one fab, its names, units and bins in
# French with latin-1 text (µA, °C, é, ²).
SENSOR = ProductSpec(
    name="YO-180NM-SENS",
    process_id="BCD180",
    wafer_size_mm=200.0,
    dies_across=40,
    site_layout=(2, 2),
    defects=DefectModel(edge_onset=0.8, clusters_per_wafer=2.5, random_defect_rate=0.02),
    hard_bins=(
        Bin(1, "BON", good=True),
        Bin(2, "FONCTIONNEL"),
        Bin(3, "FUITE"),
        Bin(4, "PARAMÉTRIQUE"),
        Bin(5, "CONTINUITÉ"),
    ),
    tests=(
        MultiPinTest(
            test_num=100, name="Continuité broches", units="V", lo_limit=-0.9, hi_limit=-0.3,
            mean=-0.6, sigma=0.03, pins=("VDD", "SORTIE", "SDA", "SCL", "ADDR", "RÉF"),
            fault_rate=0.008, open_value=-1.5, short_value=-0.02, hard_bin=5, soft_bin=50,
            time_ms=3.0,
        ),
        ParametricTest(
            test_num=200, name="IDDQ_pré", units="µA", lo_limit=0.0, hi_limit=1e5, mean=0.8,
            sigma=0.35, lognormal=True, edge_gain=5.0, defect_gain=2.0, time_ms=1.0,
        ),
        ParametricTest(
            test_num=201, name="I_fuite SDA", units="nA", lo_limit=0.0, hi_limit=500.0,
            mean=6.0, sigma=0.4, lognormal=True, edge_gain=1.0, defect_gain=0.8, time_ms=1.0,
        ),
        ParametricTest(
            test_num=210, name="Fréquence oscillateur", units="kHz", lo_limit=900.0,
            hi_limit=1100.0, mean=1000.0, sigma=8.0, process_gain=-1.0, time_ms=0.5,
        ),
        ParametricTest(
            test_num=220, name="Température jonction", units="°C", lo_limit=15.0, hi_limit=45.0,
            mean=27.0, sigma=0.4, time_ms=0.5,
        ),
        ParametricTest(
            test_num=230, name="Sensibilité thermique", units="mV/°C", lo_limit=-2.5,
            hi_limit=-1.5, mean=-2.0, sigma=0.01, process_gain=0.6, time_ms=0.5,
        ),
        ParametricTest(
            test_num=300, name="IDDQ statique", units="µA", lo_limit=0.0, hi_limit=8.0, mean=2.0,
            sigma=0.35, lognormal=True, edge_gain=6.0, defect_gain=1.6, hard_bin=3, soft_bin=30,
            time_ms=5.0,
        ),
        FunctionalTest(
            test_num=500, name="Test numérique I²C", pattern="i2c_regs_v2", base_fail=0.004,
            defect_kill=0.9, hard_bin=2, soft_bin=20, time_ms=10.0,
        ),
        ParametricTest(
            test_num=400, name="Offset capteur", units="mV", lo_limit=-3.0, hi_limit=3.0,
            mean=0.0, sigma=0.8, process_gain=1.0, hard_bin=4, soft_bin=40, time_ms=20.0,
        ),
        ParametricTest(
            test_num=401, name="Gain capteur", units="%", lo_limit=-0.5, hi_limit=0.5,
            mean=0.02, sigma=0.12, process_gain=0.2, hard_bin=4, soft_bin=41, time_ms=20.0,
        ),
        ParametricTest(
            test_num=402, name="Bruit RMS", units="µV", lo_limit=0.0, hi_limit=1.0, mean=0.45,
            sigma=0.09, defect_gain=0.8, hard_bin=4, soft_bin=42, time_ms=30.0,
        ),
    ),
)  # fmt: skip

# The configured products (include/config/products): the pipeline's own synthetic twins.
PRODUCTS: dict[str, ProductSpec] = {p.name: p for p in (DEFAULT_PRODUCT, PMIC_PRODUCT)}
