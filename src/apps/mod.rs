//! Built-in apps of the stock binary (hello, echo, sleep, fetch, static).
