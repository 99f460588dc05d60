//! The scan config file (TOML) and the eval experiments file on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = poisongate::config::ConfigFile::parse(text) {
        let _ = cfg.prompt_field.map(|p| p.into_vec());
    }
    let _ = poisongate::eval::parse(std::path::Path::new("experiments.toml"), text);
});
