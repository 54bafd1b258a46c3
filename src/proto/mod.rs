//! Pure protocol code over byte slices: uwsgi packets and HTTP/1.1.
