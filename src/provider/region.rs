//! Region names, which come from custom resources and become part of host
//! names.

/// Regions come from custom resources and end up in host names: only
/// lower-case letters, digits and inner dashes are allowed, so a tenant
/// cannot steer the operator's credentials to another host. `Err` says what
/// is expected, without repeating the name.
pub(crate) fn validate_region(region: &str) -> Result<(), &'static str> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("expected lower-case letters, digits and dashes")
    }
}
