//! The AWS shared credentials and config files (`~/.aws/credentials`, `~/.aws/config`),
//! read for the profile `AWS_PROFILE` (default `default`) when the environment holds no
//! keys — the part of the AWS profile chain that `object_store` leaves to its caller.

use std::path::PathBuf;

use object_store::aws::AmazonS3ConfigKey;

/// Settings the profile provides, as `object_store` config keys.
pub fn credentials() -> Vec<(AmazonS3ConfigKey, String)> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/credentials"));
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/config"));
    let mut out = Vec::new();
    // In the config file, profiles other than "default" are written [profile NAME].
    let config_section =
        if profile == "default" { profile.clone() } else { format!("profile {profile}") };
    for (file, section) in [(credentials, profile.clone()), (config, config_section)] {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (key, value) in section_entries(&text, &section) {
            let key = match key.as_str() {
                "aws_access_key_id" => AmazonS3ConfigKey::AccessKeyId,
                "aws_secret_access_key" => AmazonS3ConfigKey::SecretAccessKey,
                "aws_session_token" => AmazonS3ConfigKey::Token,
                "region" if std::env::var_os("AWS_REGION").is_none() => AmazonS3ConfigKey::Region,
                _ => continue,
            };
            out.push((key, value));
        }
    }
    out
}

/// `key = value` lines of one `[section]` of an INI file.
fn section_entries(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::section_entries;

    #[test]
    fn reads_one_section() {
        let text = "[default]\naws_access_key_id = A\n# note\n[profile lab]\nregion = eu-west-1\naws_secret_access_key=B\n";
        assert_eq!(
            section_entries(text, "default"),
            [("aws_access_key_id".to_string(), "A".to_string())]
        );
        assert_eq!(section_entries(text, "profile lab").len(), 2);
        assert!(section_entries(text, "other").is_empty());
    }
}
