using ProxySelection.Interception.Nfqueue;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Proxy;

/// <summary>
/// A slow server: every SYN/ACK the server namespace sends from port 80 is held in an NFQUEUE for a fixed delay, then
/// accepted unchanged. Stands in for <c>tc netem</c>, which this kernel lacks (no sch_netem).
/// </summary>
internal sealed class SynAckDelay : IAsyncDisposable
{
    private const ushort Queue = 7;
    private static readonly string[] Rule = ["OUTPUT", "-p", "tcp", "--sport", "80", "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "NFQUEUE", "--queue-num", "7"];

    private readonly NetNamespace _ns;
    private readonly NfqueueClient _queue;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _delayed;

    private SynAckDelay(NetNamespace ns, NfqueueClient queue, TimeSpan delay)
    {
        _ns = ns;
        _queue = queue;
        _loop = queue.RunAsync((in NfqueuePacket packet) =>
        {
            uint id = packet.PacketId;
            Interlocked.Increment(ref _delayed);
            _ = Task.Delay(delay).ContinueWith(_ => _queue.Accept(id), TaskScheduler.Default);
        }, _stop.Token);
    }

    public int Delayed => Volatile.Read(ref _delayed);

    public static async Task<SynAckDelay> StartAsync(NetNamespace ns, TimeSpan delay)
    {
        var queue = await ns.RunInNamespaceAsync(() => NfqueueClient.Open(new NfqueueOptions { QueueNumber = Queue }));
        try
        {
            await ns.CheckAsync("iptables", ["-A", .. Rule], ProxyLab.Timeout);
        }
        catch
        {
            queue.Dispose();
            throw;
        }

        return new SynAckDelay(ns, queue, delay);
    }

    public async ValueTask DisposeAsync()
    {
        await _ns.RunAsync("iptables", ["-D", .. Rule], ProxyLab.Timeout);
        await _stop.CancelAsync();
        await _loop.WaitAsync(ProxyLab.Timeout);
        _queue.Dispose();
        _stop.Dispose();
    }
}
