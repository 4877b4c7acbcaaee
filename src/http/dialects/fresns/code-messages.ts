/**
 * The Fresns code messages this dialect answers with, copied verbatim (en, zh-Hans, zh-Hant) from
 * Fresns v2.21.4 `database/seeders/CodeMessagesTableSeeder.php` (spec/fresns-code-messages.json).
 * Fresns clients may show them to people, so they are kept exactly as Fresns ships them.
 */
export const FRESNS_CODE_MESSAGES = {
  30000: {
    en: "Parameter error",
    "zh-Hans": "参数格式错误",
    "zh-Hant": "參數格式錯誤",
  },
  30001: {
    en: "Parameter missing error",
    "zh-Hans": "参数缺失错误",
    "zh-Hant": "參數缺失錯誤",
  },
  30002: {
    en: "Parameter values do not meet the requirements",
    "zh-Hans": "参数值不符合要求",
    "zh-Hant": "參數值不符合要求",
  },
  31301: {
    en: "App ID does not exist or is disabled",
    "zh-Hans": "App ID 不存在或已禁用",
    "zh-Hant": "App ID 不存在或已禁用",
  },
  31302: {
    en: "Signature error",
    "zh-Hans": "签名错误",
    "zh-Hant": "簽名錯誤",
  },
  31303: {
    en: "Signature expired",
    "zh-Hans": "签名已过期",
    "zh-Hant": "簽名已過期",
  },
  31501: {
    en: "Account not logged in, Unable to use",
    "zh-Hans": "账号未登录，无权操作",
    "zh-Hant": "賬號未登入，無權操作",
  },
  31502: {
    en: "Wrong account or record not exist",
    "zh-Hans": "账号错误或者不存在",
    "zh-Hant": "賬號錯誤或者不存在",
  },
  31503: {
    en: "Lost login token, Please login again",
    "zh-Hans": "登录凭证丢失，请重新登录",
    "zh-Hant": "登入憑證丟失，請重新登入",
  },
  31504: {
    en: "Login token is no longer valid, please login again",
    "zh-Hans": "登录凭证已失效，请重新登录",
    "zh-Hant": "登入憑證已失效，請重新登入",
  },
  31505: {
    en: "Account login token are incorrect or do not exist",
    "zh-Hans": "账号登录凭证错误或者不存在",
    "zh-Hant": "賬號登入憑證錯誤或者不存在",
  },
  31601: {
    en: "User not logged in, Unable to use",
    "zh-Hans": "用户未登录，无权操作",
    "zh-Hant": "用戶未登入，無權操作",
  },
  31602: {
    en: "Wrong user or record not exist",
    "zh-Hans": "用户错误或者不存在",
    "zh-Hant": "用戶錯誤或者不存在",
  },
  31603: {
    en: "User login token are incorrect or do not exist",
    "zh-Hans": "用户登录凭证错误或者不存在",
    "zh-Hant": "用戶登入憑證錯誤或者不存在",
  },
  32100: {
    en: "No service provider configured",
    "zh-Hans": "未配置服务商",
    "zh-Hant": "未配置服務商",
  },
  32301: {
    en: "No response from the service provider",
    "zh-Hans": "服务商未响应",
    "zh-Hant": "服務商未響應",
  },
  32302: {
    en: "Service provider processing failed",
    "zh-Hans": "服务商处理失败",
    "zh-Hant": "服務商處理失敗",
  },
  33200: {
    en: "Verify code template unavailable or not exist",
    "zh-Hans": "验证码模板关闭或者不存在",
    "zh-Hant": "驗證碼模板關閉或者不存在",
  },
  33201: {
    en: "Send the verify code too often, please try again later",
    "zh-Hans": "发送验证码太频繁，请稍后再试",
    "zh-Hant": "發送驗證碼太頻繁，請稍後再試",
  },
  33202: {
    en: "Verify code cannot be empty",
    "zh-Hans": "验证码不能为空",
    "zh-Hant": "驗證碼不能為空",
  },
  33203: {
    en: "Verify code incorrect or expired",
    "zh-Hans": "验证码不正确或验证码已过期",
    "zh-Hant": "驗證碼不正確或驗證碼已過期",
  },
  34101: {
    en: "Email format incorrect",
    "zh-Hans": "邮箱格式不正确",
    "zh-Hant": "郵箱格式不正確",
  },
  34102: {
    en: "Phone number format incorrect",
    "zh-Hans": "手机号格式不正确",
    "zh-Hant": "手機號格式不正確",
  },
  34103: {
    en: "Country calling code error",
    "zh-Hans": "国际区号错误",
    "zh-Hant": "國際區號錯誤",
  },
  34105: {
    en: "Password length incorrect",
    "zh-Hans": "密码长度不正确",
    "zh-Hant": "密碼長度不正確",
  },
  34110: {
    en: "Email that do not support the domain",
    "zh-Hans": "不支持该域名的邮箱",
    "zh-Hant": "不支持該域名的郵箱",
  },
  34111: {
    en: "Account password or verification code cannot be empty",
    "zh-Hans": "账号密码或者验证码不能全部为空",
    "zh-Hant": "賬號密碼或者驗證碼不能全部為空",
  },
  34204: {
    en: "The account has registered",
    "zh-Hans": "该账号已注册",
    "zh-Hant": "該賬號已註冊",
  },
  34205: {
    en: "Email has been used",
    "zh-Hans": "邮箱已被使用",
    "zh-Hant": "郵箱已被使用",
  },
  34206: {
    en: "Phone number has been used",
    "zh-Hans": "手机号已被使用",
    "zh-Hant": "手機號已被使用",
  },
  34301: {
    en: "Account not exist",
    "zh-Hans": "该账号不存在",
    "zh-Hant": "該賬號不存在",
  },
  34304: {
    en: "Incorrect account password",
    "zh-Hans": "账号密码不正确",
    "zh-Hant": "賬號密碼不正確",
  },
  34306: {
    en: "The error has exceeded the system limit. Please log in again 1 hour later",
    "zh-Hans": "错误已超系统限制，请 1 小时后再登录",
    "zh-Hant": "錯誤已超系統限制，請 1 小時後再登入",
  },
  34401: {
    en: "Email bound",
    "zh-Hans": "已绑定邮箱",
    "zh-Hant": "已綁定郵箱",
  },
  34402: {
    en: "Phone bound",
    "zh-Hans": "已绑定手机",
    "zh-Hant": "已綁定手機",
  },
  34501: {
    en: "Account wallet not exist or has been banned",
    "zh-Hans": "账号钱包不存在或者已禁用",
    "zh-Hant": "賬號錢包不存在或者已禁用",
  },
  35201: {
    en: "Current user not exist or not belong to the current account",
    "zh-Hans": "当前用户不存在或者不属于当前账号",
    "zh-Hant": "當前用戶不存在或者不屬於當前賬號",
  },
} as const;

export type FresnsCode = keyof typeof FRESNS_CODE_MESSAGES;
