/* kd-cur.c: the out-of-line half of the writer (kd-cur.h). */
#include "kd-cur.h"

uint8_t *kd_wbuf_reserve(struct kd_wbuf *w, size_t n)
{
	if (w->err)
		return NULL;
	/* An empty writer gets memory even for n == 0: its pointer is then
	 * never NULL, and NULL + 0 is undefined. */
	if (w->cap - w->len < n || !w->p) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap - w->len < n) {
			if (cap > SIZE_MAX / 2) {
				w->err = KD_ENOMEM;
				return NULL;
			}
			cap *= 2;
		}
		uint8_t *p = realloc(w->p, cap);
		if (!p) {
			w->err = KD_ENOMEM;
			return NULL;
		}
		w->p = p;
		w->cap = cap;
	}
	return w->p + w->len;
}

void kd_wbuf_free(struct kd_wbuf *w)
{
	free(w->p);
	w->p = NULL;
	w->len = w->cap = 0;
	w->err = KD_OK;
}
