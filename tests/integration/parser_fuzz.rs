//! Placeholder, replaced by the property tests of the parser.
