/*
 * mod_launcher_hygiene: what Apache's core parser takes but the launcher refuses, seen on the raw
 * bytes of a request before core unfolds or merges anything (wsgi-launcher, backends/mod_wsgi.py).
 *
 * A connection input filter (added in pre_connection) follows every byte read from the client
 * while a request head is being read (from the pre_read_request hook to the blank line) and, when
 * that head had Transfer-Encoding, the chunked body behind it.  It refuses:
 *
 *   - obsolete line folding: a header line that starts with SP or HT;
 *   - a head with both Content-Length and Transfer-Encoding (names compared case-insensitively);
 *   - a chunk-size line that is not 1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS
 *     ( token / quoted-string ) ] ) CRLF (RFC 9112 7.1.1: a trailing space with no extension,
 *     a bare LF, a stray character), and chunk data not followed by CRLF.
 *
 * A refusal makes the read fail with APR_EINVAL (and every later read on the connection):
 *
 *   - while core reads the head (ap_get_mime_headers_core), any error but a timeout is a 400:
 *     ap_read_request answers it with Connection: close and drops the connection's input filters
 *     and buffered bytes (nothing behind it is read as a request);
 *   - while HTTP_IN reads a chunked body, the handler reading it only sees a failed read (mod_wsgi
 *     answers 500).  So the filter answers 400 itself, as HTTP_IN does for its own chunk errors (an
 *     error bucket through the request's output filters: ap_die), flushes it, and drops the data
 *     of anything the request writes after it (mod_wsgi's 500 page would be appended to the 400's
 *     body); Apache closes the connection (lingering close, as for its own errors).
 * Only bytes consumed (AP_MODE_GETLINE / AP_MODE_READBYTES) move the parser; speculative reads
 * only peek.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "apr_lib.h"
#include "apr_strings.h"

module AP_MODULE_DECLARE_DATA launcher_hygiene_module;

#define FILTER_NAME "LAUNCHER_HYGIENE_IN"
#define OUT_FILTER_NAME "LAUNCHER_HYGIENE_OUT"
/* The longest header name compared ("transfer-encoding" is 17 bytes). */
#define NAME_MAX_LEN 20

static ap_filter_rec_t *hygiene_handle;
static ap_filter_rec_t *hygiene_out_handle;

typedef enum {
    S_IDLE,            /* not in a head nor a chunked body: bytes pass unseen */
    S_REQLINE_START,   /* at the start of the request line (blank lines before it are skipped) */
    S_REQLINE_CR,      /* a CR at the start of the request line */
    S_REQLINE,         /* inside the request line */
    S_FIELD_START,     /* at the start of a header line */
    S_FIELD_NAME,      /* inside a header name */
    S_FIELD_REST,      /* after the name: up to the LF */
    S_HEAD_END_CR,     /* a CR at the start of a header line */
    S_SIZE_START,      /* at the start of a chunk-size line */
    S_SIZE,            /* in the hex digits */
    S_BWS_SEMI,        /* BWS before ";" */
    S_EXT_NAME_START,  /* after ";" (BWS, then a token) */
    S_EXT_NAME,        /* in an extension name */
    S_EXT_AFTER_NAME,  /* BWS after a name: "=" or ";" */
    S_EXT_VALUE_START, /* after "=" (BWS, then a token or a quoted string) */
    S_EXT_TOKEN,       /* in a token value */
    S_EXT_QUOTED,      /* in a quoted string */
    S_EXT_QUOTED_ESC,  /* after a backslash in a quoted string */
    S_SIZE_LF,         /* the CR ending a chunk-size line was read: LF expected */
    S_DATA,            /* chunk data */
    S_DATA_CR,         /* CRLF after the data: CR expected */
    S_DATA_LF,         /* LF expected */
    S_TRAILER_START,   /* at the start of a trailer line (after the last chunk) */
    S_TRAILER,         /* inside a trailer line */
    S_TRAILER_END_CR,  /* a CR at the start of a trailer line */
    S_FAILED           /* refused: every later read fails */
} hygiene_state;

typedef struct {
    hygiene_state state;
    char name[NAME_MAX_LEN + 1];
    apr_size_t name_len;       /* NAME_MAX_LEN + 1: longer than any name compared */
    int saw_length;            /* Content-Length in this head */
    int saw_encoding;          /* Transfer-Encoding in this head */
    apr_off_t remaining;       /* chunk data still to come */
    int digits;                /* significant hex digits of the chunk size */
    int bws;                   /* spaces and tabs in a row before ";" */
    const char *why;           /* the refusal, for the log */
    request_rec *r;            /* the request whose chunked body is read, while it lives */
    int drop_output;           /* our 400 was sent: what else the request writes is dropped */
} hygiene_ctx;

static int is_tchar(unsigned char c)
{
    return apr_isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void end_of_name(hygiene_ctx *ctx)
{
    if (ctx->name_len <= NAME_MAX_LEN) {
        ctx->name[ctx->name_len] = '\0';
        if (strcmp(ctx->name, "content-length") == 0) {
            ctx->saw_length = 1;
        }
        else if (strcmp(ctx->name, "transfer-encoding") == 0) {
            ctx->saw_encoding = 1;
        }
    }
}

static apr_status_t refuse(hygiene_ctx *ctx, const char *why)
{
    ctx->state = S_FAILED;
    ctx->why = why;
    return APR_EINVAL;
}

/* The state after the LF that ends a chunk-size line. */
static hygiene_state after_size_line(hygiene_ctx *ctx)
{
    return ctx->remaining > 0 ? S_DATA : S_TRAILER_START;
}

/* Move the parser over bytes the client sent; APR_EINVAL (ctx->why set) when they are refused. */
static apr_status_t feed(hygiene_ctx *ctx, const unsigned char *p, apr_size_t len)
{
    apr_size_t i = 0;

    while (i < len) {
        unsigned char c = p[i];

        switch (ctx->state) {
        case S_IDLE:
            return APR_SUCCESS;
        case S_FAILED:
            return APR_EINVAL;

        case S_REQLINE_START:
            ctx->state = c == '\r' ? S_REQLINE_CR : c == '\n' ? S_REQLINE_START : S_REQLINE;
            break;
        case S_REQLINE_CR:
            ctx->state = c == '\n' ? S_REQLINE_START : S_REQLINE;
            break;
        case S_REQLINE:
            if (c == '\n') ctx->state = S_FIELD_START;
            break;

        case S_FIELD_START:
            if (c == ' ' || c == '\t') {
                return refuse(ctx, "obsolete line folding (a header line starting with a space or tab)");
            }
            if (c == '\r') {
                ctx->state = S_HEAD_END_CR;
                break;
            }
            if (c == '\n') {
                goto end_of_head;  /* a bare LF (Apache's strict parser refuses it) */
            }
            ctx->name_len = 0;
            ctx->state = S_FIELD_NAME;
            continue;  /* this byte is the name's first */
        case S_FIELD_NAME:
            if (c == ':') {
                end_of_name(ctx);
                ctx->state = S_FIELD_REST;
            }
            else if (c == '\n') {
                ctx->state = S_FIELD_START;  /* a line without a colon: Apache refuses it */
            }
            else if (ctx->name_len < NAME_MAX_LEN) {
                ctx->name[ctx->name_len++] = (char)apr_tolower(c);
            }
            else {
                ctx->name_len = NAME_MAX_LEN + 1;
            }
            break;
        case S_FIELD_REST:
            if (c == '\n') ctx->state = S_FIELD_START;
            break;
        case S_HEAD_END_CR:
            if (c != '\n') {  /* a bare CR: Apache refuses the line */
                ctx->name_len = NAME_MAX_LEN + 1;
                ctx->state = S_FIELD_REST;
                continue;
            }
        end_of_head:
            if (ctx->saw_length && ctx->saw_encoding) {
                return refuse(ctx, "Content-Length together with Transfer-Encoding");
            }
            /* Apache frames a body by its chunks whenever it accepts a head with Transfer-Encoding
             * (any other coding, or chunked not last, is its own 400, which removes this filter). */
            ctx->state = ctx->saw_encoding ? S_SIZE_START : S_IDLE;
            i++;
            if (ctx->state == S_IDLE) return APR_SUCCESS;
            continue;

        case S_SIZE_START:
            if (hex_value(c) < 0) {
                return refuse(ctx, "a chunk-size line that does not start with a hex digit");
            }
            ctx->remaining = 0;
            ctx->digits = 0;
            ctx->state = S_SIZE;
            continue;
        case S_SIZE:
            if (hex_value(c) >= 0) {
                if (ctx->digits > 0 || c != '0') {
                    if (++ctx->digits > 15) {
                        return refuse(ctx, "a chunk size of more than 15 hex digits");
                    }
                    ctx->remaining = (ctx->remaining << 4) | hex_value(c);
                }
            }
            else if (c == '\r') ctx->state = S_SIZE_LF;
            else if (c == ';') ctx->state = S_EXT_NAME_START;
            else if (c == ' ' || c == '\t') ctx->state = S_BWS_SEMI, ctx->bws = 1;
            else return refuse(ctx, "a chunk-size line with a character that is not a hex digit");
            break;
        case S_BWS_SEMI:
            if (c == ';') ctx->state = S_EXT_NAME_START;
            else if (c != ' ' && c != '\t') {
                return refuse(ctx, "a chunk-size line with white space not followed by an extension");
            }
            else if (++ctx->bws > 10) {  /* Apache's own limit (it answers 400 too, less cleanly) */
                return refuse(ctx, "more than 10 spaces before a chunk extension");
            }
            break;
        case S_EXT_NAME_START:
            if (is_tchar(c)) ctx->state = S_EXT_NAME;
            else if (c != ' ' && c != '\t') return refuse(ctx, "a chunk extension without a name");
            break;
        case S_EXT_NAME:
            if (is_tchar(c)) break;
            if (c == '\r') ctx->state = S_SIZE_LF;
            else if (c == ';') ctx->state = S_EXT_NAME_START;
            else if (c == '=') ctx->state = S_EXT_VALUE_START;
            else if (c == ' ' || c == '\t') ctx->state = S_EXT_AFTER_NAME;
            else return refuse(ctx, "a chunk extension name with a character outside a token");
            break;
        case S_EXT_AFTER_NAME:
            if (c == '=') ctx->state = S_EXT_VALUE_START;
            else if (c == ';') ctx->state = S_EXT_NAME_START;
            else if (c != ' ' && c != '\t') return refuse(ctx, "a chunk extension name followed by white space");
            break;
        case S_EXT_VALUE_START:
            if (is_tchar(c)) ctx->state = S_EXT_TOKEN;
            else if (c == '"') ctx->state = S_EXT_QUOTED;
            else if (c != ' ' && c != '\t') return refuse(ctx, "a chunk extension without a value after '='");
            break;
        case S_EXT_TOKEN:
            if (is_tchar(c)) break;
            if (c == '\r') ctx->state = S_SIZE_LF;
            else if (c == ';') ctx->state = S_EXT_NAME_START;
            else if (c == ' ' || c == '\t') ctx->state = S_BWS_SEMI, ctx->bws = 1;
            else return refuse(ctx, "a chunk extension value with a character outside a token");
            break;
        case S_EXT_QUOTED:
            if (c == '"') ctx->state = S_EXT_TOKEN;  /* then ";", BWS or CR, as after a token */
            else if (c == '\\') ctx->state = S_EXT_QUOTED_ESC;
            else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
                return refuse(ctx, "a control character in a chunk extension");
            }
            break;
        case S_EXT_QUOTED_ESC:
            if (c != '\t' && (c < 0x20 || c == 0x7f)) {
                return refuse(ctx, "a control character in a chunk extension");
            }
            ctx->state = S_EXT_QUOTED;
            break;
        case S_SIZE_LF:
            if (c != '\n') return refuse(ctx, "a CR not followed by LF in a chunk-size line");
            ctx->state = after_size_line(ctx);
            break;

        case S_DATA: {
            apr_size_t n = len - i;
            if ((apr_off_t)n > ctx->remaining) n = (apr_size_t)ctx->remaining;
            ctx->remaining -= (apr_off_t)n;
            i += n;
            if (ctx->remaining == 0) ctx->state = S_DATA_CR;
            continue;
        }
        case S_DATA_CR:
            if (c != '\r') return refuse(ctx, "chunk data not followed by CRLF");
            ctx->state = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (c != '\n') return refuse(ctx, "chunk data not followed by CRLF");
            ctx->state = S_SIZE_START;
            break;

        case S_TRAILER_START:
            if (c == '\r') ctx->state = S_TRAILER_END_CR;
            else if (c == '\n') { ctx->state = S_IDLE; return APR_SUCCESS; }
            else ctx->state = S_TRAILER;
            break;
        case S_TRAILER:
            if (c == '\n') ctx->state = S_TRAILER_START;
            break;
        case S_TRAILER_END_CR:
            if (c == '\n') { ctx->state = S_IDLE; return APR_SUCCESS; }
            ctx->state = S_TRAILER;
            continue;
        }
        i++;
    }
    return APR_SUCCESS;
}

static apr_status_t forget_request(void *data)
{
    ((hygiene_ctx *)data)->r = NULL;
    return APR_SUCCESS;
}

/* Refused in a chunked body: answer 400 through the request (the handler reading the body only
 * sees a failed read) and close the connection. */
static void answer_400(hygiene_ctx *ctx, conn_rec *c)
{
    request_rec *r = ctx->r;
    apr_bucket_brigade *bb;

    c->keepalive = AP_CONN_CLOSE;
    if (r == NULL || r->sent_bodyct || r->bytes_sent) {
        return;
    }
    apr_table_setn(r->notes, "launcher-hygiene", ctx->why);
    bb = apr_brigade_create(r->pool, c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, ap_bucket_error_create(HTTP_BAD_REQUEST, NULL, r->pool, c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(c->bucket_alloc));
    ap_pass_brigade(r->output_filters, bb);
    /* The handler reading the body sees the failed read and answers too (mod_wsgi: 500), after
     * this response: write this one out, then drop the data of whatever else the request writes
     * (hygiene_out).  The connection is not marked aborted: Apache still closes it the lingering
     * way, so a client still sending the body reads the 400 rather than a reset. */
    apr_brigade_cleanup(bb);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(c->bucket_alloc));
    ap_pass_brigade(c->output_filters, bb);
    ctx->drop_output = 1;
}

/* The connection's output: passed as it is, except after answer_400, when only metadata (EOS,
 * FLUSH, the end-of-request bucket) goes on. */
static apr_status_t hygiene_out(ap_filter_t *f, apr_bucket_brigade *bb)
{
    hygiene_ctx *ctx = f->ctx;
    apr_bucket *e, *next;

    if (ctx->drop_output) {
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb); e = next) {
            next = APR_BUCKET_NEXT(e);
            if (!APR_BUCKET_IS_METADATA(e)) {
                apr_bucket_delete(e);
            }
        }
    }
    return ap_pass_brigade(f->next, bb);
}

static apr_status_t hygiene_in(ap_filter_t *f, apr_bucket_brigade *bb, ap_input_mode_t mode,
                               apr_read_type_e block, apr_off_t readbytes)
{
    hygiene_ctx *ctx = f->ctx;
    apr_status_t rv;
    apr_bucket *e;
    hygiene_state before;

    if (ctx->state == S_FAILED) {
        return APR_EINVAL;
    }
    rv = ap_get_brigade(f->next, bb, mode, block, readbytes);
    if (rv != APR_SUCCESS || ctx->state == S_IDLE
            || (mode != AP_MODE_GETLINE && mode != AP_MODE_READBYTES)) {
        return rv;
    }
    before = ctx->state;
    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb); e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t len;

        if (APR_BUCKET_IS_METADATA(e)) {
            continue;
        }
        rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        rv = feed(ctx, (const unsigned char *)data, len);
        if (rv != APR_SUCCESS) {
            apr_brigade_cleanup(bb);
            ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, f->c, "launcher_hygiene: request refused (400): %s",
                          ctx->why);
            if (before >= S_SIZE_START) {
                answer_400(ctx, f->c);
            }
            f->c->keepalive = AP_CONN_CLOSE;
            return APR_EINVAL;
        }
        if (ctx->state == S_IDLE) {
            break;
        }
    }
    return APR_SUCCESS;
}

static int hygiene_pre_connection(conn_rec *c, void *csd)
{
    hygiene_ctx *ctx;

#if AP_MODULE_MAGIC_AT_LEAST(20120211, 52)
    if (c->master) {  /* an HTTP/2 stream: not read by core's HTTP/1 parser */
        return DECLINED;
    }
#endif
    ctx = apr_pcalloc(c->pool, sizeof(*ctx));
    ctx->state = S_IDLE;
    ap_set_module_config(c->conn_config, &launcher_hygiene_module, ctx);
    ap_add_input_filter_handle(hygiene_handle, ctx, NULL, c);
    ap_add_output_filter_handle(hygiene_out_handle, ctx, NULL, c);
    return DECLINED;
}

static void hygiene_pre_read_request(request_rec *r, conn_rec *c)
{
    hygiene_ctx *ctx = ap_get_module_config(c->conn_config, &launcher_hygiene_module);

    if (ctx == NULL || ctx->state == S_FAILED) {
        return;
    }
    ctx->state = S_REQLINE_START;
    ctx->saw_length = ctx->saw_encoding = 0;
    ctx->r = NULL;
}

static int hygiene_post_read_request(request_rec *r)
{
    hygiene_ctx *ctx;

    if (r->main || r->prev) {
        return DECLINED;
    }
    ctx = ap_get_module_config(r->connection->conn_config, &launcher_hygiene_module);
    if (ctx != NULL && ctx->state >= S_SIZE_START && ctx->state != S_FAILED) {
        ctx->r = r;
        apr_pool_cleanup_register(r->pool, ctx, forget_request, apr_pool_cleanup_null);
    }
    return DECLINED;
}

static void register_hooks(apr_pool_t *p)
{
    hygiene_handle = ap_register_input_filter(FILTER_NAME, hygiene_in, NULL, AP_FTYPE_CONNECTION);
    hygiene_out_handle = ap_register_output_filter(OUT_FILTER_NAME, hygiene_out, NULL, AP_FTYPE_CONNECTION);
    ap_hook_pre_connection(hygiene_pre_connection, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_read_request(hygiene_pre_read_request, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_read_request(hygiene_post_read_request, NULL, NULL, APR_HOOK_FIRST);
}

AP_DECLARE_MODULE(launcher_hygiene) = {
    STANDARD20_MODULE_STUFF,
    NULL, NULL, NULL, NULL, NULL,
    register_hooks
};
