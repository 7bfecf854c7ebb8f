namespace ProxySelection.Lab;

/// <summary>
/// A tcpdump capture running inside a namespace, writing a pcap file packet by packet (<c>-U --immediate-mode</c>).
/// <see cref="StopAsync"/> ends it (SIGINT, so tcpdump flushes) and returns the packets.
/// </summary>
public sealed class PacketCapture : IAsyncDisposable
{
    private readonly LabProcess process;

    private PacketCapture(LabProcess process, string path, string device)
    {
        this.process = process;
        PcapPath = path;
        Device = device;
    }

    public string PcapPath { get; }

    public string Device { get; }

    internal static async Task<PacketCapture> StartAsync(NetNamespace ns, string device, string pcapPath, string? filter,
        TimeSpan readyTimeout, CancellationToken cancellationToken)
    {
        // -Z root: tcpdump otherwise drops to its own user after opening the file, which then cannot be reopened.
        List<string> args = ["-i", device, "-n", "-U", "--immediate-mode", "-s", "0", "-Z", "root", "-w", pcapPath];
        if (!string.IsNullOrWhiteSpace(filter))
        {
            args.Add(filter);
        }

        var process = ns.StartProcess("tcpdump", args);
        var capture = new PacketCapture(process, pcapPath, device);
        try
        {
            // tcpdump prints this once the capture handle is active: packets after it are recorded.
            await process.WaitForOutputAsync("listening on", readyTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await capture.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return capture;
    }

    /// <summary>Stops tcpdump and reads what it wrote. Safe to call more than once.</summary>
    public async Task<IReadOnlyList<PcapPacket>> StopAsync()
    {
        await process.StopAsync(TimeSpan.FromSeconds(5), LabNative.SigInt).ConfigureAwait(false);
        return File.Exists(PcapPath) ? PcapFile.Read(PcapPath) : [];
    }

    /// <summary>tcpdump's own messages (including its "N packets captured" summary after stop).</summary>
    public string Log => process.Output;

    public async ValueTask DisposeAsync() => await process.DisposeAsync().ConfigureAwait(false);
}
