//! Vital-sign kinds: IEEE 11073 MDC code, UCUM unit and the physiological
//! range a reading must fall in to be accepted at all.
//!
//! The ranges reject values no living patient (or pump) produces; they are a
//! data-integrity check, never a clinical alarm.

use serde::{Deserialize, Serialize};

use crate::error::ProtocolError;

/// The kinds of vital sign a device may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitalKind {
    /// Heart (pulse) rate, beats per minute.
    HeartRate,
    /// Peripheral oxygen saturation, percent.
    Spo2,
    /// Respiratory rate, breaths per minute.
    RespiratoryRate,
    /// Body temperature, degrees Celsius.
    Temperature,
    /// Non-invasive systolic blood pressure, mmHg.
    SystolicBp,
    /// Non-invasive diastolic blood pressure, mmHg.
    DiastolicBp,
    /// Infusion pump delivery rate, mL/h.
    InfusionRate,
}

impl VitalKind {
    /// Every kind.
    pub const ALL: [VitalKind; 7] = [
        VitalKind::HeartRate,
        VitalKind::Spo2,
        VitalKind::RespiratoryRate,
        VitalKind::Temperature,
        VitalKind::SystolicBp,
        VitalKind::DiastolicBp,
        VitalKind::InfusionRate,
    ];

    /// The snake_case name used on the wire.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            VitalKind::HeartRate => "heart_rate",
            VitalKind::Spo2 => "spo2",
            VitalKind::RespiratoryRate => "respiratory_rate",
            VitalKind::Temperature => "temperature",
            VitalKind::SystolicBp => "systolic_bp",
            VitalKind::DiastolicBp => "diastolic_bp",
            VitalKind::InfusionRate => "infusion_rate",
        }
    }

    /// IEEE 11073-10101 numeric code (partition 2, SCADA).
    #[must_use]
    pub fn mdc_code(self) -> u32 {
        match self {
            VitalKind::HeartRate => 147_842,
            VitalKind::Spo2 => 150_456,
            VitalKind::RespiratoryRate => 151_562,
            VitalKind::Temperature => 150_364,
            VitalKind::SystolicBp => 150_021,
            VitalKind::DiastolicBp => 150_022,
            VitalKind::InfusionRate => 157_784,
        }
    }

    /// IEEE 11073-10101 reference id.
    #[must_use]
    pub fn mdc_ref(self) -> &'static str {
        match self {
            VitalKind::HeartRate => "MDC_ECG_HEART_RATE",
            VitalKind::Spo2 => "MDC_PULS_OXIM_SAT_O2",
            VitalKind::RespiratoryRate => "MDC_RESP_RATE",
            VitalKind::Temperature => "MDC_TEMP_BODY",
            VitalKind::SystolicBp => "MDC_PRESS_BLD_NONINV_SYS",
            VitalKind::DiastolicBp => "MDC_PRESS_BLD_NONINV_DIA",
            VitalKind::InfusionRate => "MDC_FLOW_FLUID_PUMP",
        }
    }

    /// UCUM unit code.
    #[must_use]
    pub fn ucum_unit(self) -> &'static str {
        match self {
            VitalKind::HeartRate | VitalKind::RespiratoryRate => "/min",
            VitalKind::Spo2 => "%",
            VitalKind::Temperature => "Cel",
            VitalKind::SystolicBp | VitalKind::DiastolicBp => "mm[Hg]",
            VitalKind::InfusionRate => "mL/h",
        }
    }

    /// Inclusive physiological range `(min, max)`.
    #[must_use]
    pub fn range(self) -> (f64, f64) {
        match self {
            VitalKind::HeartRate => (20.0, 300.0),
            VitalKind::Spo2 => (50.0, 100.0),
            VitalKind::RespiratoryRate => (0.0, 100.0),
            VitalKind::Temperature => (25.0, 45.0),
            VitalKind::SystolicBp => (40.0, 300.0),
            VitalKind::DiastolicBp => (20.0, 200.0),
            VitalKind::InfusionRate => (0.0, 1200.0),
        }
    }

    /// Check `value` against [`VitalKind::range`].
    ///
    /// # Errors
    /// [`ProtocolError::OutOfRange`] if it is outside or not finite.
    pub fn check(self, value: f64) -> Result<(), ProtocolError> {
        let (min, max) = self.range();
        if value.is_finite() && value >= min && value <= max {
            Ok(())
        } else {
            Err(ProtocolError::OutOfRange {
                kind: self.name(),
                value,
                min,
                max,
                unit: self.ucum_unit(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_sane_and_checked() {
        for kind in VitalKind::ALL {
            let (min, max) = kind.range();
            assert!(min < max);
            assert!(kind.check(min).is_ok());
            assert!(kind.check(max).is_ok());
            assert!(kind.check(max + 1.0).is_err());
            assert!(kind.check(f64::NAN).is_err());
            assert!(kind.check(f64::INFINITY).is_err());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
        }
    }
}
