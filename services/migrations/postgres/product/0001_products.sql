-- The catalogue (seeded at start) and the product service's idempotent reservations.
CREATE TABLE products (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    description TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    stock BIGINT NOT NULL CHECK (stock >= 0)
);
CREATE TABLE reservations (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL
);
