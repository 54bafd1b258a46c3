//! Configuration: INI lexer, the option table, placeholders, validation.
