// The example store's own code: one product, a cart kept in localStorage, a checkout.
// Only the LiveChatWidget.call lines are what a real store adds; the rest stands in for
// the store's platform. Amounts are kept in integer cents and handed over as numbers
// (cents / 100), so each prints as the exact decimal the store charges.
//
// config.js (written by whoever serves this folder) sets
//   window.STORE_CONFIG = { ingestUrl: 'http://127.0.0.1:8080', organizationId: 'org_x' }
// and, for a store whose chat platform knows the visitor, customerId (passed on with
// set_customer, as such a store does).

// A store whose chat platform knows the visitor says so first, before any event.
if (window.STORE_CONFIG?.customerId) {
  LiveChatWidget.call('set_customer', { id: window.STORE_CONFIG.customerId });
}

const PRODUCT = {
  id: '123456789',
  title: 'Merino Wool Crew Neck',
  sku: 'MW-CREW-M',
  cents: 14999,
};
const SHIPPING_CENTS = 500;
const CURRENCY = 'USD';

const amount = (cents) => cents / 100;
const shown = (cents) => `$${amount(cents).toFixed(2)}`;

const cart = {
  quantity: () => Number(localStorage.getItem('example_cart_quantity') || 0),
  set: (quantity) => localStorage.setItem('example_cart_quantity', String(quantity)),
};

// A cart line as DESIGN.md section 2 has it: the line total and the product.
function cartLine(quantity) {
  return {
    total_price: amount(PRODUCT.cents * quantity),
    currency: CURRENCY,
    quantity,
    product: { id: PRODUCT.id, title: PRODUCT.title, price: amount(PRODUCT.cents), sku: PRODUCT.sku },
  };
}

function addToCart(quantity) {
  cart.set(cart.quantity() + quantity);
  LiveChatWidget.call('track_sales_event', {
    name: 'store_product_added_to_cart',
    data: { cart_lines: [cartLine(quantity)] },
  });
}

function removeFromCart() {
  if (cart.quantity() === 0) return;
  cart.set(cart.quantity() - 1);
  LiveChatWidget.call('track_sales_event', {
    name: 'store_product_removed_from_cart',
    data: { cart_lines: [cartLine(1)] },
  });
}

// The store's checkout: the order is kept under its id, and the thanks page fires it.
function checkout() {
  const quantity = cart.quantity();
  if (quantity === 0) return;
  const id = String(Date.now());
  const subtotal = PRODUCT.cents * quantity;
  const order = {
    id,
    order_number: `#${id.slice(-6)}`,
    currency: CURRENCY,
    subtotal_price: amount(subtotal),
    shipping_price: amount(SHIPPING_CENTS),
    total_price: amount(subtotal + SHIPPING_CENTS),
    line_items: [
      { product_id: PRODUCT.id, title: PRODUCT.title, quantity, price: amount(PRODUCT.cents), sku: PRODUCT.sku },
    ],
  };
  localStorage.setItem(`example_order:${id}`, JSON.stringify(order));
  cart.set(0);
  location.href = `thanks.html?order=${encodeURIComponent(id)}`;
}

// The widget's script tag, as a store pastes it, with this store's settings.
function loadWidget() {
  const config = window.STORE_CONFIG;
  if (!config) {
    document.body.prepend('config.js is missing: no sales tracking on this page.');
    return;
  }
  const script = document.createElement('script');
  script.async = true;
  script.src = `${config.ingestUrl}/v1/widget.js`;
  script.dataset.organizationId = config.organizationId;
  script.dataset.ingestUrl = config.ingestUrl;
  script.onload = () => {
    const visitor = document.getElementById('visitor');
    if (visitor) visitor.textContent = `visitor ${LiveChatWidget.get('customer_id')}`;
  };
  document.head.append(script);
}
