//! Upstream renderings of one internal vital-sign record: the device JSON as
//! received and FHIR R4 `Observation` resources.
