//! The JSON Schema of the user-data bootcfg accepts (for editors: yaml-language-server).
