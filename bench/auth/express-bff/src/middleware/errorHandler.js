// src/middleware/errorHandler.ts of the seed, as CommonJS.
'use strict';

// eslint-disable-next-line no-unused-vars
const errorHandler = (error, req, res, next) => {
  console.error('Error:', error);

  if (error.name === 'ServiceError') {
    res.status(error.statusCode || 500).json({
      code: error.code || 'SERVICE_ERROR',
      message: error.message
    });
    return;
  }

  if (error.name === 'ValidationError') {
    res.status(400).json({
      code: 'VALIDATION_ERROR',
      message: error.message
    });
    return;
  }

  res.status(500).json({
    code: 'INTERNAL_ERROR',
    message: process.env.NODE_ENV === 'production'
      ? 'Internal server error'
      : error.message
  });
};

module.exports = { errorHandler };
