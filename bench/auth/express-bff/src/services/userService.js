// src/services/userService.ts of the seed, as CommonJS.
'use strict';
const axios = require('axios');

class ServiceError extends Error {
  constructor(message, statusCode, code) {
    super(message);
    this.statusCode = statusCode;
    this.code = code;
    this.name = 'ServiceError';
  }
}

class UserService {
  constructor() {
    this.client = axios.create({
      baseURL: process.env.USER_SERVICE_URL,
      timeout: 5000,
      headers: {
        'Content-Type': 'application/json',
        'X-API-Key': process.env.USER_SERVICE_API_KEY
      }
    });

    // Response interceptor: uniform error handling
    this.client.interceptors.response.use(
      (response) => response,
      (error) => {
        if (error.response) {
          throw new ServiceError(
            (error.response.data && error.response.data.message) || 'Service error',
            error.response.status,
            error.response.data && error.response.data.code
          );
        }
        throw new ServiceError('Network error', 503);
      }
    );
  }

  async authenticate(email, password) {
    const response = await this.client.post('/api/v1/auth/login', {
      email,
      password
    });
    return this.transformAuthResponse(response.data);
  }

  async refreshToken(refreshToken) {
    const response = await this.client.post('/api/v1/auth/refresh', {
      refreshToken
    });
    return this.transformAuthResponse(response.data);
  }

  async getUserById(userId) {
    const response = await this.client.get(`/api/v1/users/${userId}`);
    return this.transformUser(response.data);
  }

  transformAuthResponse(data) {
    return {
      user: this.transformUser(data.user),
      accessToken: data.access_token,
      refreshToken: data.refresh_token,
      expiresIn: data.expires_in
    };
  }

  transformUser(data) {
    return {
      id: data.id,
      email: data.email,
      name: data.name,
      role: data.role,
      createdAt: new Date(data.created_at)
    };
  }
}

module.exports = { UserService, ServiceError };
