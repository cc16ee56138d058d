-- Facilities (seeded at start) and one-hour bookings; `date` is always the canonical
-- YYYY-MM-DD the service writes, so the unique constraint holds one booking per slot.
CREATE TABLE facilities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    sport TEXT NOT NULL
);
CREATE TABLE bookings (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    facility_id INTEGER NOT NULL REFERENCES facilities(id),
    date TEXT NOT NULL,
    hour INTEGER NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (facility_id, date, hour)
);
CREATE INDEX bookings_by_user ON bookings(user_id);
