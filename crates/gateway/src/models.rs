//! Names for the AAGUIDs of well-known security keys, so that `devices list` can say which
//! model registered a passkey "where known". The names are the product families under which
//! the vendors list these AAGUIDs in the FIDO Metadata Service; a family is named rather than
//! one variant, because one AAGUID covers several variants of a key.
//!
//! An AAGUID is only what the key claims unless the registration's attestation chain was
//! verified (`attestation = "direct"`): the listing says which of the two it is.

/// (AAGUID, model) pairs, lowercase and hyphenated.
const MODELS: &[(&str, &str)] = &[
    ("cb69481e-8ff7-4039-93ec-0a2729a154a8", "YubiKey 5 Series"),
    ("ee882879-721c-4913-9775-3dfcce97072a", "YubiKey 5 Series"),
    ("fa2b99dc-9e39-4257-8f92-4a30d23c4118", "YubiKey 5 Series"),
    ("2fc0579f-8113-47ea-b116-bb5a8db9202a", "YubiKey 5 Series"),
    ("c5ef55ff-ad9a-4b9f-b580-adebafe026d0", "YubiKey 5Ci"),
    (
        "73bb0cd4-e502-49b8-9c6f-b59445bf720b",
        "YubiKey 5 FIPS Series",
    ),
    ("d8522d9f-575b-4866-88a9-ba99fa02f35b", "YubiKey Bio Series"),
    (
        "149a2021-8ef6-4133-96b8-81f8d5b7f1f5",
        "Security Key by Yubico",
    ),
    (
        "6d44ba9b-f6ec-2e49-b930-0c8fe920cb73",
        "Security Key by Yubico",
    ),
    (
        "b92c3f9a-c014-4056-887f-140a2501163b",
        "Security Key by Yubico",
    ),
    (
        "f8a011f3-8c0a-4d15-8006-17111f9edc7d",
        "Security Key by Yubico",
    ),
];

/// The model an AAGUID names, where this table knows it.
pub fn model(aaguid: &str) -> Option<&'static str> {
    let aaguid = aaguid.to_ascii_lowercase();
    MODELS
        .iter()
        .find(|(id, _)| *id == aaguid)
        .map(|(_, name)| *name)
}

/// How `devices list` describes a passkey's authenticator: the model where known, and whether
/// that is attested or only claimed.
pub fn describe(aaguid: Option<&str>, attested: bool) -> String {
    let Some(aaguid) = aaguid else {
        return "aaguid not recorded".into();
    };
    let proof = if attested {
        "attested"
    } else {
        "claimed, not attested"
    };
    match model(aaguid) {
        Some(name) => format!("aaguid {aaguid} ({name}, {proof})"),
        None if aaguid == "00000000-0000-0000-0000-000000000000" => {
            format!("aaguid {aaguid} (the key gave none)")
        }
        None => format!("aaguid {aaguid} (model unknown, {proof})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_aaguids_name_their_model_and_say_whether_it_is_attested() {
        assert_eq!(
            model("CB69481E-8FF7-4039-93EC-0A2729A154A8"),
            Some("YubiKey 5 Series")
        );
        assert_eq!(model("00000000-0000-0000-0000-000000000001"), None);
        for (id, _) in MODELS {
            assert_eq!(uuid::Uuid::parse_str(id).unwrap().to_string(), *id);
        }
        assert_eq!(
            describe(Some("d8522d9f-575b-4866-88a9-ba99fa02f35b"), true),
            "aaguid d8522d9f-575b-4866-88a9-ba99fa02f35b (YubiKey Bio Series, attested)"
        );
        assert_eq!(
            describe(Some("6d44ba9b-f6ec-2e49-b930-0c8fe920cb73"), false),
            "aaguid 6d44ba9b-f6ec-2e49-b930-0c8fe920cb73 (Security Key by Yubico, claimed, not attested)"
        );
        assert_eq!(
            describe(Some("12345678-1234-1234-1234-123456789abc"), false),
            "aaguid 12345678-1234-1234-1234-123456789abc (model unknown, claimed, not attested)"
        );
        assert_eq!(
            describe(Some("00000000-0000-0000-0000-000000000000"), false),
            "aaguid 00000000-0000-0000-0000-000000000000 (the key gave none)"
        );
        assert_eq!(describe(None, false), "aaguid not recorded");
    }
}
