using Microsoft.Extensions.Logging;
using ProxySelection.Interception.Nfqueue;

namespace ProxySelection.Engine.Hook;

/// <summary>
/// The kernel side of <see cref="IPacketVerdicts"/>: an <see cref="NfqueueClient"/> bound fail-open, and its receive
/// loop on a thread of its own that hands each packet to the engine.
/// </summary>
public sealed class NfqueueHook : IPacketVerdicts, IAsyncDisposable
{
    private readonly NfqueueClient _queue;
    private readonly System.Net.Sockets.Socket _timestamps;
    private readonly ILogger _log;
    private readonly Func<bool> _mayWarn;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource<ThreadSchedule> _schedule = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _receiveLoop = Task.CompletedTask;
    private int _disposed;

    private NfqueueHook(NfqueueClient queue, ILogger log, Func<bool> mayWarn)
    {
        _queue = queue;
        _mayWarn = mayWarn;
        // Queued SYNs carry their arrival time: the engine deducts the time they waited in the queue from their hold.
        _timestamps = NfqueueClient.EnableReceiveTimestamps();
        _log = log;
    }

    /// <summary>Packets the kernel dropped for a full queue socket (ENOBUFS).</summary>
    public long ReceiveOverruns => _queue.Statistics.ReceiveOverruns;

    public VerdictLatency Latency => _queue.Latency;

    /// <summary>
    /// Binds the queue fail-open with room for <paramref name="maxQueueLength"/> packets (held SYNs count): beyond that the
    /// kernel accepts new packets untouched instead of queueing them behind a backlog. Receive errors are logged when
    /// <paramref name="mayWarn"/> allows (a flood must not turn into as many lines).
    /// </summary>
    public static NfqueueHook Open(ushort queueNumber, ILogger log, uint maxQueueLength, Func<bool> mayWarn) =>
        new(NfqueueClient.Open(new NfqueueOptions { QueueNumber = queueNumber, FailOpen = true, ReceiveThreadNice = -10, MaxQueueLength = maxQueueLength }),
            log, mayWarn);

    /// <summary>How the receive thread is scheduled, once it has started.</summary>
    public Task<ThreadSchedule> Schedule => _schedule.Task;

    /// <summary>
    /// Starts receiving: <paramref name="handler"/> runs on the hook's thread, one packet at a time. With
    /// <paramref name="realtime"/> that thread runs SCHED_RR priority 1 when permitted (as the hold clock): a held SYN's
    /// budget runs from its arrival, and at nice -10 the thread still waited behind the daemon's own relay threads and two
    /// busy-looping processes (issue 13's 200-SYN burst: 41-96 decided in time, the rest passed at half the probe timeout;
    /// 200 of 200 held with this thread at SCHED_RR). It blocks in the queue's receive when there is nothing to decide,
    /// and the kernel's RT throttling leaves every core 5 % for others under a flood.
    /// </summary>
    public void Start(QueuedPacketHandler handler, bool realtime = false)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _receiveLoop = Task.Factory.StartNew(() => ReceiveLoop(handler, realtime), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private void ReceiveLoop(QueuedPacketHandler handler, bool realtime)
    {
        _schedule.TrySetResult(realtime ? ThreadScheduling.Raise(realtime: true, HoldClock.Nice) : ThreadSchedule.Normal);
        NfqueuePacketHandler adapter = (in NfqueuePacket packet) =>
            handler(new QueuedPacket(packet.PacketId, packet.Mark, packet.Hook, packet.InDeviceIndex, packet.Payload, packet.TimestampMicroseconds, packet.OutDeviceIndex));
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                _queue.Receive(adapter, TimeSpan.FromMilliseconds(100));
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (NfqueueException e)
            {
                // The failing packet was accepted by the client already; keep receiving.
                if (_mayWarn())
                {
                    ProxyEngineLog.HookError(_log, e.InnerException?.Message ?? e.Message);
                }
            }
        }
    }

    public void Accept(uint packetId) => _queue.Accept(packetId);

    public void AcceptWithMark(uint packetId, uint mark) => _queue.AcceptWithMark(packetId, mark);

    public void AcceptWithPayload(uint packetId, ReadOnlySpan<byte> packet, uint? mark = null) => _queue.AcceptWithPayload(packetId, packet, mark);

    public void Drop(uint packetId) => _queue.Drop(packetId);

    /// <summary>Stops the loop, then closes the queue: packets still held are accepted by the kernel (fail-open, bypass).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _receiveLoop.ConfigureAwait(false);
        _queue.Dispose();
        _timestamps.Dispose();
        _stopping.Dispose();
    }
}
