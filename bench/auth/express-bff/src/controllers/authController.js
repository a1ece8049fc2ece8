// src/controllers/authController.ts of the seed, as CommonJS.
'use strict';
const { UserService } = require('../services/userService');
const { body, validationResult } = require('express-validator');

class AuthController {
  constructor() {
    this.userService = new UserService();

    // Input validation rules
    this.loginValidation = [
      body('email').isEmail().normalizeEmail(),
      body('password').isLength({ min: 6 })
    ];

    this.login = async (req, res, next) => {
      try {
        const errors = validationResult(req);
        if (!errors.isEmpty()) {
          res.status(400).json({
            code: 'VALIDATION_ERROR',
            message: 'Invalid input',
            details: errors.array()
          });
          return;
        }

        const { email, password } = req.body;

        // Call the downstream service
        const authResponse = await this.userService.authenticate(email, password);

        // HTTP-only cookie (refresh token kept away from scripts)
        res.cookie('refreshToken', authResponse.refreshToken, {
          httpOnly: true,
          secure: process.env.NODE_ENV === 'production',
          sameSite: 'strict',
          maxAge: 7 * 24 * 60 * 60 * 1000 // 7 days
        });

        // Only the access token and the user go to the frontend
        res.json({
          success: true,
          data: {
            user: authResponse.user,
            accessToken: authResponse.accessToken,
            expiresIn: authResponse.expiresIn
          }
        });
      } catch (error) {
        next(error);
      }
    };

    this.refresh = async (req, res, next) => {
      try {
        const refreshToken = req.cookies.refreshToken;
        if (!refreshToken) {
          res.status(401).json({
            code: 'UNAUTHORIZED',
            message: 'No refresh token provided'
          });
          return;
        }

        const authResponse = await this.userService.refreshToken(refreshToken);

        res.cookie('refreshToken', authResponse.refreshToken, {
          httpOnly: true,
          secure: process.env.NODE_ENV === 'production',
          sameSite: 'strict',
          maxAge: 7 * 24 * 60 * 60 * 1000
        });

        res.json({
          success: true,
          data: {
            user: authResponse.user,
            accessToken: authResponse.accessToken,
            expiresIn: authResponse.expiresIn
          }
        });
      } catch (error) {
        // Invalid or expired token: clear the cookie
        res.clearCookie('refreshToken');
        res.status(401).json({
          code: 'UNAUTHORIZED',
          message: 'Invalid or expired refresh token'
        });
      }
    };
  }
}

module.exports = { AuthController };
