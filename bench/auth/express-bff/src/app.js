// src/app.ts of the seed, as CommonJS. One addition for the benchmark: HOST
// (unset = all interfaces, as the seed) so the bench can bind loopback only.
'use strict';
const express = require('express');
const cookieParser = require('cookie-parser');
const helmet = require('helmet');
const cors = require('cors');
const { AuthController } = require('./controllers/authController');
const { errorHandler } = require('./middleware/errorHandler');

const app = express();
const authController = new AuthController();

// Security middleware
app.use(helmet());
app.use(cors({
  origin: (process.env.ALLOWED_ORIGINS && process.env.ALLOWED_ORIGINS.split(',')) ||
    ['http://localhost:3000'],
  credentials: true
}));
app.use(express.json());
app.use(cookieParser());

// Health check
app.get('/health', (req, res) => {
  res.json({ status: 'ok', timestamp: new Date().toISOString() });
});

// Auth routes
app.post('/api/v1/auth/login',
  authController.loginValidation,
  authController.login
);
app.post('/api/v1/auth/refresh', authController.refresh);

// Error handling
app.use(errorHandler);

const PORT = process.env.PORT || 3001;
const onListen = () => {
  console.log(`User BFF service running on port ${PORT}`);
};
if (process.env.HOST) {
  app.listen(PORT, process.env.HOST, onListen);
} else {
  app.listen(PORT, onListen);
}

module.exports = app;
