import type { Catalog, ToolDefinition } from '../src/pipeline/tool.js';
import type { VendorSpec } from '../src/vendor-kit/vendor-spec.js';
import { getBudget } from './leash/get-budget.js';
import { resendVendor } from './resend/client.js';
import { sendEmail } from './resend/send-email.js';
import { stripeVendor } from './stripe/client.js';
import { getPayment } from './stripe/get-payment.js';
import { issueRefund } from './stripe/issue-refund.js';
import { twilioVendor } from './twilio/client.js';
import { sendSms } from './twilio/send-sms.js';

/** The one list of governed tools. Adding a vendor = adding a folder and a line here. */
const TOOLS: ToolDefinition[] = [issueRefund, getPayment, sendSms, sendEmail, getBudget];
const VENDORS: VendorSpec[] = [stripeVendor, twilioVendor, resendVendor];

export const catalog: Catalog = {
  tools: new Map(TOOLS.map((t) => [t.name, t])),
  vendors: new Map(VENDORS.map((v) => [v.name, v])),
};
