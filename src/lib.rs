//! poisongate (placeholder while the app is built)
