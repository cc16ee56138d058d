-- The catalogue (seeded at start) and the product service's idempotent reservations.
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    description TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents > 0),
    stock INTEGER NOT NULL CHECK (stock >= 0)
);
CREATE TABLE reservations (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL
);
