// SPDX-License-Identifier: GPL-2.0
/*
 * vmaugment guest driver.
 *
 * Binds the vmaugment virtio device (virtio ID 63) and exposes it as the
 * misc device /dev/vmaugment.  Every open file is a session: it can issue
 * synchronous calls (VMAUG_IOC_CALL), stream module uploads whose data the
 * device reads straight from the caller's pinned pages
 * (VMAUG_IOC_UPLOAD_CHUNK), and read() the host events it subscribed to
 * (VMAUG_IOC_SUBSCRIBE, poll()).
 *
 * Any number of calls may be in flight at once: each request carries an id
 * chosen here and its buffers are the virtqueue token, so a response can only
 * reach the caller that sent it.  The device is not trusted: reported lengths
 * are clamped, ids and opcodes are checked, and every wait for it times out.
 */

#include <linux/compat.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include <linux/virtio_vmaugment.h>

/* Receive buffers kept on the event queue. */
#define VMAUG_EVENT_BUFS	16
#define VMAUG_EVENT_BUF_SIZE	(sizeof(struct virtio_vmaugment_event) + \
				 VMAUG_MAX_EVENT_PAYLOAD)
/* Events a session may have unread before newer ones are dropped. */
#define VMAUG_SESSION_EVENTS	128
/* Timeout for requests the driver makes on its own (SUBSCRIBE). */
#define VMAUG_INTERNAL_TIMEOUT_MS	5000

enum vmaug_req_state {
	VMAUG_REQ_QUEUED,	/* owned by the device */
	VMAUG_REQ_DONE,		/* returned, the caller consumes it */
	VMAUG_REQ_ABANDONED,	/* caller gave up; free it once returned */
};

struct vmaug_dev {
	struct kref ref;
	struct virtio_device *vdev;	/* device reference held until release */
	struct virtqueue *req_vq;
	struct virtqueue *evt_vq;	/* NULL without VIRTIO_VMAUGMENT_F_EVENTS */
	u32 max_req_payload;

	/* Protects the virtqueues, the flags, @sessions and @reap_list. */
	spinlock_t lock;
	bool dead;			/* no queues (removed, suspended) */
	bool removed;			/* gone for good: sessions see ENODEV */
	bool running;			/* queues set up; under the device lock */
	wait_queue_head_t req_space;	/* request queue had no room */
	unsigned long returns;		/* requests given back so far */
	atomic64_t next_id;

	struct list_head reap_list;	/* abandoned requests the device returned */
	struct work_struct reap_work;
	struct work_struct evt_work;
	struct list_head sessions;
	struct mutex sub_lock;		/* one SUBSCRIBE to the device at a time */
	struct work_struct sub_work;	/* tell a restored device the mask */

	int index;
	char name[24];
	struct miscdevice misc;
};

struct vmaug_req {
	struct list_head node;		/* vmaug_dev.reap_list */
	struct completion done;
	enum vmaug_req_state state;
	int err;			/* transport error set on removal */
	unsigned int used;		/* bytes the device claims it wrote */

	struct virtio_vmaugment_req hdr;		/* device-readable */
	struct vmaug_upload_chunk chunk;		/* device-readable */
	struct virtio_vmaugment_resp resp;		/* device-writable */
	struct vmaug_upload_state upload_state;	/* device-writable */

	void *req_buf;			/* kernel copy of a call's payload */
	size_t req_len;
	void *resp_buf;			/* zeroed: the device may lie about used */
	size_t resp_cap;
	struct page **pages;		/* pinned user data of an upload chunk */
	unsigned int npages;
	unsigned int data_off;		/* offset of the data in pages[0] */
	unsigned int data_len;
	bool is_chunk;
};

struct vmaug_event_rec {
	struct list_head node;
	size_t len;			/* header plus payload */
	u8 data[];
};

struct vmaug_session {
	struct vmaug_dev *vd;
	struct list_head node;		/* vmaug_dev.sessions */
	u32 mask;			/* under vd->lock */
	struct list_head events;	/* under vd->lock */
	unsigned int nevents;
	bool lost;			/* an event was dropped for this session */
	wait_queue_head_t wq;
	struct mutex read_lock;		/* one reader at a time per session */
};

static DEFINE_IDA(vmaug_ida);

static void vmaug_dev_release(struct kref *ref)
{
	struct vmaug_dev *vd = container_of(ref, struct vmaug_dev, ref);

	put_device(&vd->vdev->dev);
	kfree(vd);
}

static void vmaug_dev_put(struct vmaug_dev *vd)
{
	kref_put(&vd->ref, vmaug_dev_release);
}

static void vmaug_req_free(struct vmaug_req *r)
{
	if (!r)
		return;
	if (r->pages) {
		unpin_user_pages(r->pages, r->npages);
		kvfree(r->pages);
	}
	kvfree(r->req_buf);
	kvfree(r->resp_buf);
	kfree(r);
}

/* Called with vd->lock held, for every request the device gives back. */
static void vmaug_req_returned(struct vmaug_dev *vd, struct vmaug_req *r,
			       unsigned int used, int err)
{
	r->used = used;
	r->err = err;
	if (r->state == VMAUG_REQ_ABANDONED) {
		/*
		 * Freeing may unpin user pages; keep that out of interrupt
		 * context.
		 */
		list_add_tail(&r->node, &vd->reap_list);
		schedule_work(&vd->reap_work);
		return;
	}
	r->state = VMAUG_REQ_DONE;
	complete(&r->done);
}

static void vmaug_reap_work(struct work_struct *work)
{
	struct vmaug_dev *vd = container_of(work, struct vmaug_dev, reap_work);
	struct vmaug_req *r, *tmp;
	unsigned long flags;
	LIST_HEAD(list);

	spin_lock_irqsave(&vd->lock, flags);
	list_splice_init(&vd->reap_list, &list);
	spin_unlock_irqrestore(&vd->lock, flags);

	list_for_each_entry_safe(r, tmp, &list, node)
		vmaug_req_free(r);
}

/*
 * Called with vd->lock held: take every request the device gave back and
 * leave the queue's interrupt enabled.  True if any came back.
 */
static bool vmaug_req_vq_drain(struct vmaug_dev *vd, struct virtqueue *vq)
{
	struct vmaug_req *r;
	unsigned int len;
	bool any = false;

	do {
		virtqueue_disable_cb(vq);
		while ((r = virtqueue_get_buf(vq, &len))) {
			vmaug_req_returned(vd, r, len, 0);
			any = true;
		}
	} while (!virtqueue_enable_cb(vq));
	if (any)
		vd->returns++;
	return any;
}

static void vmaug_req_vq_done(struct virtqueue *vq)
{
	struct vmaug_dev *vd = vq->vdev->priv;
	unsigned long flags;

	spin_lock_irqsave(&vd->lock, flags);
	vmaug_req_vq_drain(vd, vq);
	spin_unlock_irqrestore(&vd->lock, flags);

	wake_up_all(&vd->req_space);
}

/* Describe a kvmalloc()ed buffer, page by page if it is vmalloc()ed. */
static unsigned int vmaug_buf_nents(const void *buf, size_t len)
{
	if (!len)
		return 0;
	if (!is_vmalloc_addr(buf))
		return 1;
	return DIV_ROUND_UP(offset_in_page(buf) + len, PAGE_SIZE);
}

static unsigned int vmaug_buf_to_sg(struct scatterlist *sg, void *buf,
				    size_t len)
{
	unsigned int n = 0;

	if (!len)
		return 0;
	if (!is_vmalloc_addr(buf)) {
		sg_set_buf(sg, buf, len);
		return 1;
	}
	while (len) {
		size_t off = offset_in_page(buf);
		size_t part = min_t(size_t, len, PAGE_SIZE - off);

		sg_set_page(&sg[n++], vmalloc_to_page(buf), part, off);
		buf += part;
		len -= part;
	}
	return n;
}

static unsigned int vmaug_pages_to_sg(struct scatterlist *sg,
				      struct vmaug_req *r)
{
	unsigned int left = r->data_len, off = r->data_off, i;

	for (i = 0; i < r->npages; i++) {
		unsigned int part = min_t(unsigned int, left, PAGE_SIZE - off);

		sg_set_page(&sg[i], r->pages[i], part, off);
		left -= part;
		off = 0;
	}
	return r->npages;
}

/*
 * Queue *@rp and wait for it; 0 means the device answered and used is set.
 * If the caller gives up first, the request now belongs to the device side
 * of the driver and *@rp is set to NULL.
 */
static int vmaug_transact(struct vmaug_dev *vd, struct vmaug_req **rp,
			  unsigned int timeout_ms)
{
	struct scatterlist *sg, *sgs[2];
	struct vmaug_req *r = *rp;
	unsigned long flags, left, seen;
	unsigned int nout, nin;
	bool drained = false;
	long wait;
	int err;

	r->hdr.id = cpu_to_le64(atomic64_inc_return(&vd->next_id));
	init_completion(&r->done);

	nout = 1 + (r->is_chunk ? 1 + r->npages :
		    vmaug_buf_nents(r->req_buf, r->req_len));
	nin = 1 + (r->is_chunk ? 1 : vmaug_buf_nents(r->resp_buf, r->resp_cap));
	sg = kmalloc_array(nout + nin, sizeof(*sg), GFP_KERNEL);
	if (!sg)
		return -ENOMEM;

	sg_init_table(sg, nout);
	sg_set_buf(&sg[0], &r->hdr, sizeof(r->hdr));
	if (r->is_chunk) {
		sg_set_buf(&sg[1], &r->chunk, sizeof(r->chunk));
		vmaug_pages_to_sg(&sg[2], r);
	} else {
		vmaug_buf_to_sg(&sg[1], r->req_buf, r->req_len);
	}
	sg_init_table(&sg[nout], nin);
	sg_set_buf(&sg[nout], &r->resp, sizeof(r->resp));
	if (r->is_chunk)
		sg_set_buf(&sg[nout + 1], &r->upload_state,
			   sizeof(r->upload_state));
	else
		vmaug_buf_to_sg(&sg[nout + 1], r->resp_buf, r->resp_cap);
	sgs[0] = &sg[0];
	sgs[1] = &sg[nout];

	left = msecs_to_jiffies(timeout_ms ? timeout_ms :
				VMAUG_DEFAULT_TIMEOUT_MS);
	for (;;) {
		spin_lock_irqsave(&vd->lock, flags);
		if (vd->dead) {
			err = -ENODEV;
		} else {
			r->state = VMAUG_REQ_QUEUED;
			err = virtqueue_add_sgs(vd->req_vq, sgs, 1, 1, r,
						GFP_ATOMIC);
			if (!err) {
				/*
				 * The device mostly answers before the kick
				 * returns (it waits a bounded time for the
				 * host): take the answer from the used ring
				 * here rather than through an interrupt,
				 * which costs an emulated guest a third of a
				 * PING's round trip.  What is not there yet
				 * comes with the interrupt that the drain
				 * enables again.
				 */
				virtqueue_disable_cb(vd->req_vq);
				virtqueue_kick(vd->req_vq);
				drained = vmaug_req_vq_drain(vd,
							     vd->req_vq);
			}
		}
		seen = vd->returns;
		spin_unlock_irqrestore(&vd->lock, flags);
		if (drained)
			wake_up_all(&vd->req_space);
		if (err != -ENOSPC)
			break;
		/* The ring is full of other callers' requests: wait for room. */
		wait = wait_event_interruptible_timeout(vd->req_space,
							READ_ONCE(vd->dead) ||
							READ_ONCE(vd->returns) != seen,
							left);
		if (wait < 0) {
			err = -EINTR;
			break;
		}
		if (!wait) {
			err = -ETIMEDOUT;
			break;
		}
		left = wait;
	}
	kfree(sg);
	if (err)
		return err;

	wait = wait_for_completion_interruptible_timeout(&r->done, left);
	if (wait <= 0) {
		spin_lock_irqsave(&vd->lock, flags);
		if (r->state == VMAUG_REQ_QUEUED) {
			/*
			 * The device still owns the buffers (and may still read
			 * the pinned pages): it frees them when it returns them,
			 * or removal does.
			 */
			r->state = VMAUG_REQ_ABANDONED;
			spin_unlock_irqrestore(&vd->lock, flags);
			*rp = NULL;
			return wait ? -EINTR : -ETIMEDOUT;
		}
		spin_unlock_irqrestore(&vd->lock, flags);
	}
	if (r->err)
		return r->err;

	/* Never believe the device's header without checking it. */
	if (r->used < sizeof(r->resp)) {
		dev_err_ratelimited(&vd->vdev->dev,
				    "short response (%u bytes) to request %llu\n",
				    r->used, le64_to_cpu(r->hdr.id));
		return -EIO;
	}
	if (r->resp.id != r->hdr.id || r->resp.opcode != r->hdr.opcode ||
	    le16_to_cpu(r->resp.status) > VMAUG_S_MAX) {
		dev_err_ratelimited(&vd->vdev->dev,
				    "bad response header to request %llu\n",
				    le64_to_cpu(r->hdr.id));
		return -EIO;
	}
	return 0;
}

static struct vmaug_req *vmaug_req_alloc(u16 opcode)
{
	struct vmaug_req *r = kzalloc(sizeof(*r), GFP_KERNEL);

	if (r)
		r->hdr.opcode = cpu_to_le16(opcode);
	return r;
}

/* Bytes of response payload the device wrote, as far as we can tell. */
static size_t vmaug_resp_written(const struct vmaug_req *r, size_t cap)
{
	size_t wrote = r->used - sizeof(r->resp);

	return min3(wrote, cap, (size_t)le32_to_cpu(r->resp.len));
}

static long vmaug_ioctl_call(struct vmaug_session *s, void __user *argp)
{
	struct vmaug_dev *vd = s->vd;
	struct vmaug_ioctl_call c;
	struct vmaug_req *r;
	size_t copy;
	u16 status;
	int err;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.req_len > vd->max_req_payload)
		return -EMSGSIZE;
	if (c.timeout_ms > VMAUG_MAX_TIMEOUT_MS)
		return -EINVAL;
	/* The event mask is per file; VMAUG_IOC_SUBSCRIBE merges them. */
	if (c.opcode == VMAUG_OP_SUBSCRIBE)
		return -EINVAL;

	r = vmaug_req_alloc(c.opcode);
	if (!r)
		return -ENOMEM;
	r->hdr.len = cpu_to_le32(c.req_len);
	r->req_len = c.req_len;
	r->resp_cap = min_t(u32, c.resp_len, VMAUG_MAX_RESP_PAYLOAD);

	err = -ENOMEM;
	if (r->req_len) {
		r->req_buf = kvmalloc(r->req_len, GFP_KERNEL);
		if (!r->req_buf)
			goto out_free_req;
		err = -EFAULT;
		if (copy_from_user(r->req_buf, u64_to_user_ptr(c.req_addr),
				   r->req_len))
			goto out_free_req;
	}
	if (r->resp_cap) {
		r->resp_buf = kvzalloc(r->resp_cap, GFP_KERNEL);
		if (!r->resp_buf)
			goto out_free_req;
	}

	err = vmaug_transact(vd, &r, c.timeout_ms);
	if (err)
		goto out_free_req;

	status = le16_to_cpu(r->resp.status);
	c.status = status;
	if (status == VMAUG_S_NO_SPACE) {
		/* The size the response needs, so the caller can retry. */
		c.resp_len = min_t(u32, le32_to_cpu(r->resp.len),
				   VMAUG_MAX_RESP_PAYLOAD);
		copy = 0;
	} else {
		copy = vmaug_resp_written(r, r->resp_cap);
		c.resp_len = copy;
	}
	err = -EFAULT;
	if (copy && copy_to_user(u64_to_user_ptr(c.resp_addr), r->resp_buf,
				 copy))
		goto out_free_req;
	if (copy_to_user(argp, &c, sizeof(c)))
		goto out_free_req;
	err = 0;

out_free_req:
	vmaug_req_free(r);
	return err;
}

static long vmaug_ioctl_chunk(struct vmaug_session *s, void __user *argp)
{
	struct vmaug_dev *vd = s->vd;
	struct vmaug_ioctl_chunk c;
	struct vmaug_req *r;
	unsigned long start;
	int pinned, err;
	u16 status;

	if (copy_from_user(&c, argp, sizeof(c)))
		return -EFAULT;
	if (c.reserved || c.reserved2 || c.timeout_ms > VMAUG_MAX_TIMEOUT_MS)
		return -EINVAL;
	if (!c.data_len || c.data_len > VMAUG_CHUNK_MAX_DATA ||
	    sizeof(struct vmaug_upload_chunk) + c.data_len > vd->max_req_payload)
		return -EMSGSIZE;
	if (c.data_addr + c.data_len < c.data_addr)
		return -EFAULT;

	r = vmaug_req_alloc(VMAUG_OP_UPLOAD_CHUNK);
	if (!r)
		return -ENOMEM;
	r->is_chunk = true;
	r->hdr.len = cpu_to_le32(sizeof(r->chunk) + c.data_len);
	r->chunk.upload_id = cpu_to_le64(c.upload_id);
	r->chunk.offset = cpu_to_le64(c.offset);
	r->data_len = c.data_len;
	start = c.data_addr & PAGE_MASK;
	r->data_off = c.data_addr - start;
	r->npages = DIV_ROUND_UP(r->data_off + c.data_len, PAGE_SIZE);

	err = -ENOMEM;
	r->pages = kvmalloc_array(r->npages, sizeof(*r->pages), GFP_KERNEL);
	if (!r->pages)
		goto out_free_req;
	/* The device only reads the data: pin without FOLL_WRITE. */
	pinned = pin_user_pages_fast(start, r->npages, 0, r->pages);
	if (pinned != r->npages) {
		if (pinned > 0)
			unpin_user_pages(r->pages, pinned);
		kvfree(r->pages);
		r->pages = NULL;
		err = pinned < 0 ? pinned : -EFAULT;
		goto out_free_req;
	}

	err = vmaug_transact(vd, &r, c.timeout_ms);
	if (err)
		goto out_free_req;

	status = le16_to_cpu(r->resp.status);
	c.status = status;
	if (status == VMAUG_S_OK) {
		if (le32_to_cpu(r->resp.len) != sizeof(r->upload_state) ||
		    r->used < sizeof(r->resp) + sizeof(r->upload_state)) {
			dev_err_ratelimited(&vd->vdev->dev,
					    "bad upload chunk response\n");
			err = -EIO;
			goto out_free_req;
		}
		c.offset = le64_to_cpu(r->upload_state.offset);
	}
	err = copy_to_user(argp, &c, sizeof(c)) ? -EFAULT : 0;

out_free_req:
	vmaug_req_free(r);
	return err;
}

static u32 vmaug_sessions_mask(struct vmaug_dev *vd)
{
	struct vmaug_session *s;
	unsigned long flags;
	u32 mask = 0;

	spin_lock_irqsave(&vd->lock, flags);
	list_for_each_entry(s, &vd->sessions, node)
		mask |= s->mask;
	spin_unlock_irqrestore(&vd->lock, flags);
	return mask;
}

/* Tell the device the union of all sessions' masks; sub_lock held. */
static int vmaug_send_subscribe(struct vmaug_dev *vd, unsigned int timeout_ms)
{
	struct vmaug_subscribe sub = {
		.mask = cpu_to_le32(vmaug_sessions_mask(vd)),
	};
	struct vmaug_req *r;
	int err;

	r = vmaug_req_alloc(VMAUG_OP_SUBSCRIBE);
	if (!r)
		return -ENOMEM;
	r->hdr.len = cpu_to_le32(sizeof(sub));
	r->req_len = sizeof(sub);
	r->resp_cap = sizeof(sub);
	r->req_buf = kmemdup(&sub, sizeof(sub), GFP_KERNEL);
	r->resp_buf = kzalloc(sizeof(sub), GFP_KERNEL);
	err = -ENOMEM;
	if (!r->req_buf || !r->resp_buf)
		goto out_free_req;

	err = vmaug_transact(vd, &r, timeout_ms);
	if (!err && le16_to_cpu(r->resp.status) != VMAUG_S_OK)
		err = -EIO;

out_free_req:
	vmaug_req_free(r);
	return err;
}

/* A restored device starts with its default mask: send it ours again. */
static void vmaug_sub_work(struct work_struct *work)
{
	struct vmaug_dev *vd = container_of(work, struct vmaug_dev, sub_work);

	mutex_lock(&vd->sub_lock);
	if (vmaug_sessions_mask(vd))
		vmaug_send_subscribe(vd, VMAUG_INTERNAL_TIMEOUT_MS);
	mutex_unlock(&vd->sub_lock);
}

static long vmaug_ioctl_subscribe(struct vmaug_session *s, void __user *argp)
{
	struct vmaug_dev *vd = s->vd;
	struct vmaug_ioctl_subscribe sub;
	unsigned long flags;
	u32 old;
	int err;

	if (copy_from_user(&sub, argp, sizeof(sub)))
		return -EFAULT;
	/* Type 0 does not exist. */
	if (sub.reserved || (sub.mask & 1))
		return -EINVAL;
	if (!vd->evt_vq)
		return -EOPNOTSUPP;

	if (mutex_lock_interruptible(&vd->sub_lock))
		return -EINTR;
	spin_lock_irqsave(&vd->lock, flags);
	old = s->mask;
	s->mask = sub.mask;
	spin_unlock_irqrestore(&vd->lock, flags);

	err = vmaug_send_subscribe(vd, VMAUG_INTERNAL_TIMEOUT_MS);
	if (err) {
		spin_lock_irqsave(&vd->lock, flags);
		s->mask = old;
		spin_unlock_irqrestore(&vd->lock, flags);
	}
	mutex_unlock(&vd->sub_lock);
	return err;
}

static long vmaug_ioctl(struct file *file, unsigned int cmd,
			unsigned long arg)
{
	struct vmaug_session *s = file->private_data;
	void __user *argp = (void __user *)arg;

	/* The ioctl numbers encode the structure sizes: no other size is ok. */
	switch (cmd) {
	case VMAUG_IOC_CALL:
		return vmaug_ioctl_call(s, argp);
	case VMAUG_IOC_UPLOAD_CHUNK:
		return vmaug_ioctl_chunk(s, argp);
	case VMAUG_IOC_SUBSCRIBE:
		return vmaug_ioctl_subscribe(s, argp);
	default:
		return -ENOTTY;
	}
}

static ssize_t vmaug_read(struct file *file, char __user *buf, size_t count,
			  loff_t *ppos)
{
	struct vmaug_session *s = file->private_data;
	struct vmaug_dev *vd = s->vd;
	struct vmaug_event_rec *rec;
	unsigned long flags;
	ssize_t ret;

	if (mutex_lock_interruptible(&s->read_lock))
		return -EINTR;
	for (;;) {
		spin_lock_irqsave(&vd->lock, flags);
		rec = list_first_entry_or_null(&s->events,
					       struct vmaug_event_rec, node);
		if (rec && count >= rec->len) {
			list_del(&rec->node);
			s->nevents--;
		}
		spin_unlock_irqrestore(&vd->lock, flags);
		if (rec)
			break;
		ret = -ENODEV;
		if (READ_ONCE(vd->removed))
			goto out_unlock;
		ret = -EAGAIN;
		if (file->f_flags & O_NONBLOCK)
			goto out_unlock;
		ret = wait_event_interruptible(s->wq,
					       !list_empty_careful(&s->events) ||
					       READ_ONCE(vd->removed));
		if (ret)
			goto out_unlock;
	}

	/* One event per read(); a short buffer would lose the event. */
	ret = -EMSGSIZE;
	if (count < rec->len)
		goto out_unlock;
	ret = copy_to_user(buf, rec->data, rec->len) ? -EFAULT : rec->len;
	kfree(rec);

out_unlock:
	mutex_unlock(&s->read_lock);
	return ret;
}

static __poll_t vmaug_poll(struct file *file, poll_table *wait)
{
	struct vmaug_session *s = file->private_data;
	struct vmaug_dev *vd = s->vd;
	__poll_t mask = 0;
	unsigned long flags;

	poll_wait(file, &s->wq, wait);
	spin_lock_irqsave(&vd->lock, flags);
	if (!list_empty(&s->events))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (vd->removed)
		mask |= EPOLLHUP | EPOLLERR;
	spin_unlock_irqrestore(&vd->lock, flags);
	return mask;
}

static int vmaug_open(struct inode *inode, struct file *file)
{
	struct vmaug_dev *vd = container_of(file->private_data,
					    struct vmaug_dev, misc);
	struct vmaug_session *s;
	unsigned long flags;

	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		return -ENOMEM;
	INIT_LIST_HEAD(&s->events);
	init_waitqueue_head(&s->wq);
	mutex_init(&s->read_lock);

	/* misc_open() holds misc_mtx, so removal cannot have freed @vd. */
	kref_get(&vd->ref);
	s->vd = vd;
	spin_lock_irqsave(&vd->lock, flags);
	list_add_tail(&s->node, &vd->sessions);
	spin_unlock_irqrestore(&vd->lock, flags);

	file->private_data = s;
	return stream_open(inode, file);
}

static int vmaug_release(struct inode *inode, struct file *file)
{
	struct vmaug_session *s = file->private_data;
	struct vmaug_dev *vd = s->vd;
	struct vmaug_event_rec *rec, *tmp;
	unsigned long flags;
	bool resubscribe;

	mutex_lock(&vd->sub_lock);
	spin_lock_irqsave(&vd->lock, flags);
	list_del(&s->node);
	resubscribe = s->mask && !vd->dead;
	spin_unlock_irqrestore(&vd->lock, flags);
	/* Best effort: the device then stops sending events nobody reads. */
	if (resubscribe)
		vmaug_send_subscribe(vd, VMAUG_INTERNAL_TIMEOUT_MS);
	mutex_unlock(&vd->sub_lock);

	list_for_each_entry_safe(rec, tmp, &s->events, node)
		kfree(rec);
	kfree(s);
	vmaug_dev_put(vd);
	return 0;
}

static const struct file_operations vmaug_fops = {
	.owner = THIS_MODULE,
	.open = vmaug_open,
	.release = vmaug_release,
	.read = vmaug_read,
	.poll = vmaug_poll,
	.unlocked_ioctl = vmaug_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

/* Hand one event to every session that asked for its type; vd->lock held. */
static void vmaug_dispatch_event(struct vmaug_dev *vd, void *buf,
				 unsigned int used)
{
	struct virtio_vmaugment_event *ev = buf;
	struct vmaug_event_rec *rec;
	struct vmaug_session *s;
	size_t len;
	u32 type;

	if (used < sizeof(*ev)) {
		dev_err_ratelimited(&vd->vdev->dev, "short event (%u bytes)\n",
				    used);
		return;
	}
	type = le32_to_cpu(ev->type);
	if (type > VMAUG_EVENT_MAX) {
		dev_err_ratelimited(&vd->vdev->dev, "bad event type %u\n", type);
		return;
	}
	/* Clamp the payload to what the device wrote and what fits. */
	len = min3((size_t)le32_to_cpu(ev->len), (size_t)used - sizeof(*ev),
		   (size_t)VMAUG_MAX_EVENT_PAYLOAD);
	ev->len = cpu_to_le32(len);
	ev->reserved = 0;
	len += sizeof(*ev);

	list_for_each_entry(s, &vd->sessions, node) {
		if (!(s->mask & VMAUG_EVENT_MASK(type)))
			continue;
		if (s->nevents >= VMAUG_SESSION_EVENTS) {
			s->lost = true;
			continue;
		}
		rec = kmalloc(struct_size(rec, data, len), GFP_ATOMIC);
		if (!rec) {
			s->lost = true;
			continue;
		}
		rec->len = len;
		memcpy(rec->data, buf, len);
		if (s->lost) {
			ev = (struct virtio_vmaugment_event *)rec->data;
			ev->flags |= cpu_to_le32(VMAUG_EVENT_F_LOST);
			s->lost = false;
		}
		list_add_tail(&rec->node, &s->events);
		s->nevents++;
		wake_up_interruptible(&s->wq);
	}
}

static int vmaug_add_event_buf(struct vmaug_dev *vd, void *buf)
{
	struct scatterlist sg;

	sg_init_one(&sg, buf, VMAUG_EVENT_BUF_SIZE);
	return virtqueue_add_inbuf(vd->evt_vq, &sg, 1, buf, GFP_ATOMIC);
}

static void vmaug_evt_work(struct work_struct *work)
{
	struct vmaug_dev *vd = container_of(work, struct vmaug_dev, evt_work);
	unsigned long flags;
	unsigned int used;
	void *buf;

	spin_lock_irqsave(&vd->lock, flags);
	while (!vd->dead && (buf = virtqueue_get_buf(vd->evt_vq, &used))) {
		vmaug_dispatch_event(vd, buf, used);
		if (vmaug_add_event_buf(vd, buf))
			kfree(buf);
	}
	if (!vd->dead)
		virtqueue_kick(vd->evt_vq);
	spin_unlock_irqrestore(&vd->lock, flags);
}

static void vmaug_evt_vq_done(struct virtqueue *vq)
{
	struct vmaug_dev *vd = vq->vdev->priv;

	schedule_work(&vd->evt_work);
}

static int vmaug_fill_event_vq(struct vmaug_dev *vd)
{
	unsigned long flags;
	int i, err = 0;
	void *buf;

	for (i = 0; i < VMAUG_EVENT_BUFS; i++) {
		buf = kzalloc(VMAUG_EVENT_BUF_SIZE, GFP_KERNEL);
		if (!buf)
			return -ENOMEM;
		spin_lock_irqsave(&vd->lock, flags);
		err = vmaug_add_event_buf(vd, buf);
		spin_unlock_irqrestore(&vd->lock, flags);
		if (err) {
			kfree(buf);
			return err;
		}
	}
	virtqueue_kick(vd->evt_vq);
	return 0;
}

static int vmaug_find_vqs(struct vmaug_dev *vd, bool events)
{
	struct virtqueue *vqs[VMAUG_VQ_MAX];
	unsigned int nvqs = events ? 2 : 1;
	int err;

	/* Out of tree: follow the interface change of Linux 6.11. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
	struct virtqueue_info info[VMAUG_VQ_MAX] = {
		{ "request", vmaug_req_vq_done },
		{ "event", vmaug_evt_vq_done },
	};

	err = virtio_find_vqs(vd->vdev, nvqs, vqs, info, NULL);
#else
	vq_callback_t *callbacks[VMAUG_VQ_MAX] = {
		vmaug_req_vq_done, vmaug_evt_vq_done,
	};
	static const char * const names[VMAUG_VQ_MAX] = { "request", "event" };

	err = virtio_find_vqs(vd->vdev, nvqs, vqs, callbacks, names, NULL);
#endif
	if (err)
		return err;
	vd->req_vq = vqs[VMAUG_VQ_REQUEST];
	vd->evt_vq = nvqs > 1 ? vqs[VMAUG_VQ_EVENT] : NULL;
	return 0;
}

static void vmaug_config_changed(struct virtio_device *vdev)
{
	u32 state;

	virtio_cread_le(vdev, struct virtio_vmaugment_config, helper_state,
			&state);
	/* The host decides how often this flips. */
	dev_info_ratelimited(&vdev->dev, "host helper %s\n",
			     state == VMAUG_HELPER_CONNECTED ? "connected" :
			     "disconnected");
}

/* Set up the queues and let requests in. */
static int vmaug_start(struct vmaug_dev *vd)
{
	struct virtio_device *vdev = vd->vdev;
	unsigned long flags;
	int err;

	err = vmaug_find_vqs(vd,
			     virtio_has_feature(vdev, VIRTIO_VMAUGMENT_F_EVENTS));
	if (err) {
		dev_err(&vdev->dev, "cannot set up virtqueues: %d\n", err);
		return err;
	}
	virtio_device_ready(vdev);

	if (vd->evt_vq) {
		err = vmaug_fill_event_vq(vd);
		if (err) {
			void *buf;

			virtio_reset_device(vdev);
			while ((buf = virtqueue_detach_unused_buf(vd->evt_vq)))
				kfree(buf);
			vdev->config->del_vqs(vdev);
			return err;
		}
	}
	spin_lock_irqsave(&vd->lock, flags);
	vd->dead = false;
	spin_unlock_irqrestore(&vd->lock, flags);
	vd->running = true;
	return 0;
}

/*
 * Stop the device and fail every request it still holds with @err; its
 * callers see @err at once, abandoned requests are freed.
 */
static void vmaug_stop(struct vmaug_dev *vd, int err)
{
	struct virtio_device *vdev = vd->vdev;
	struct vmaug_req *r;
	unsigned long flags;
	void *buf;

	if (!vd->running)
		return;
	vd->running = false;

	/* From here on nothing new reaches the queues. */
	spin_lock_irqsave(&vd->lock, flags);
	vd->dead = true;
	spin_unlock_irqrestore(&vd->lock, flags);
	wake_up_all(&vd->req_space);

	virtio_reset_device(vdev);
	spin_lock_irqsave(&vd->lock, flags);
	while ((r = virtqueue_detach_unused_buf(vd->req_vq)))
		vmaug_req_returned(vd, r, 0, err);
	if (vd->evt_vq)
		while ((buf = virtqueue_detach_unused_buf(vd->evt_vq)))
			kfree(buf);
	spin_unlock_irqrestore(&vd->lock, flags);

	/*
	 * Freeing the interrupts waits for running callbacks, so no work can
	 * be queued from there after this; the work items see @dead and leave
	 * the queues alone.
	 */
	vdev->config->del_vqs(vdev);
	cancel_work_sync(&vd->evt_work);
	cancel_work_sync(&vd->sub_work);
	flush_work(&vd->reap_work);
}

static int vmaug_probe(struct virtio_device *vdev)
{
	struct vmaug_dev *vd;
	u32 version, max_req;
	int err;

	virtio_cread_le(vdev, struct virtio_vmaugment_config, proto_version,
			&version);
	if (version != VMAUG_PROTO_VERSION) {
		dev_err(&vdev->dev, "unsupported protocol version %u\n",
			version);
		return -ENODEV;
	}
	virtio_cread_le(vdev, struct virtio_vmaugment_config, max_req_payload,
			&max_req);

	vd = kzalloc(sizeof(*vd), GFP_KERNEL);
	if (!vd)
		return -ENOMEM;
	kref_init(&vd->ref);
	get_device(&vdev->dev);
	vd->vdev = vdev;
	vd->dead = true;
	vd->max_req_payload = min_t(u32, max_req, VMAUG_MAX_REQ_PAYLOAD);
	spin_lock_init(&vd->lock);
	init_waitqueue_head(&vd->req_space);
	INIT_LIST_HEAD(&vd->reap_list);
	INIT_LIST_HEAD(&vd->sessions);
	INIT_WORK(&vd->reap_work, vmaug_reap_work);
	INIT_WORK(&vd->evt_work, vmaug_evt_work);
	INIT_WORK(&vd->sub_work, vmaug_sub_work);
	mutex_init(&vd->sub_lock);
	vdev->priv = vd;

	err = vmaug_start(vd);
	if (err)
		goto out_put_dev;

	vd->index = ida_alloc(&vmaug_ida, GFP_KERNEL);
	if (vd->index < 0) {
		err = vd->index;
		goto out_stop_device;
	}
	if (vd->index)
		snprintf(vd->name, sizeof(vd->name), "vmaugment%d", vd->index);
	else
		strscpy(vd->name, "vmaugment", sizeof(vd->name));
	vd->misc.minor = MISC_DYNAMIC_MINOR;
	vd->misc.name = vd->name;
	vd->misc.fops = &vmaug_fops;
	vd->misc.mode = 0600;
	err = misc_register(&vd->misc);
	if (err) {
		dev_err(&vdev->dev, "cannot register /dev/%s: %d\n", vd->name,
			err);
		goto out_free_index;
	}
	dev_info(&vdev->dev, "/dev/%s ready%s\n", vd->name,
		 vd->evt_vq ? ", with events" : "");
	return 0;

out_free_index:
	ida_free(&vmaug_ida, vd->index);
out_stop_device:
	vmaug_stop(vd, -ENODEV);
out_put_dev:
	vmaug_dev_put(vd);
	return err;
}

static void vmaug_remove(struct virtio_device *vdev)
{
	struct vmaug_dev *vd = vdev->priv;
	struct vmaug_session *s;
	unsigned long flags;

	spin_lock_irqsave(&vd->lock, flags);
	vd->removed = true;
	spin_unlock_irqrestore(&vd->lock, flags);

	misc_deregister(&vd->misc);
	ida_free(&vmaug_ida, vd->index);
	vmaug_stop(vd, -ENODEV);

	/* Open files stay valid; readers and pollers learn the device left. */
	spin_lock_irqsave(&vd->lock, flags);
	list_for_each_entry(s, &vd->sessions, node)
		wake_up_interruptible(&s->wq);
	spin_unlock_irqrestore(&vd->lock, flags);
	vmaug_dev_put(vd);
}

#ifdef CONFIG_PM_SLEEP
/*
 * Suspend: the device loses its queues.  Callers were frozen (their waits
 * ended with -EINTR); whatever the device still holds is failed.
 */
static int vmaug_freeze(struct virtio_device *vdev)
{
	vmaug_stop(vdev->priv, -EINTR);
	return 0;
}

static int vmaug_restore(struct virtio_device *vdev)
{
	struct vmaug_dev *vd = vdev->priv;
	int err;

	err = vmaug_start(vd);
	if (!err)
		schedule_work(&vd->sub_work);
	return err;
}
#endif

static const unsigned int vmaug_features[] = {
	VIRTIO_VMAUGMENT_F_EVENTS,
};

static const struct virtio_device_id vmaug_id_table[] = {
	{ VIRTIO_ID_VMAUGMENT, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static struct virtio_driver vmaug_driver = {
	.feature_table = vmaug_features,
	.feature_table_size = ARRAY_SIZE(vmaug_features),
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = vmaug_id_table,
	.probe = vmaug_probe,
	.remove = vmaug_remove,
	.config_changed = vmaug_config_changed,
#ifdef CONFIG_PM_SLEEP
	.freeze = vmaug_freeze,
	.restore = vmaug_restore,
#endif
};

module_virtio_driver(vmaug_driver);
MODULE_DEVICE_TABLE(virtio, vmaug_id_table);
MODULE_DESCRIPTION("vmaugment guest driver (/dev/vmaugment)");
MODULE_LICENSE("GPL");
