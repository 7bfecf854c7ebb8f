using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ProxySelection.Interception.Bpf;

/// <summary>
/// MP_JOINs of connections this proxy holds, taken in the kernel: the egress programs learn the listener's tokens into an
/// LRU map (<see cref="TokenLearning"/>), and <see cref="JoinMatchProgram"/>, pinned at <see cref="PinPath"/> for the raw
/// table's <c>-m bpf --object-pinned</c> rule, sends a join for such a token to the listener instead of the queue. The
/// kernel's listener authenticates the join (RFC 8684 HMAC); a token it no longer knows gets its RST, as before.
/// </summary>
internal sealed class KernelJoinTokens : IDisposable
{
    /// <summary>The pins' directory on the host's bpf file system (systemd mounts it; pinning needs no capability there).</summary>
    public const string HostPinDirectory = "/sys/fs/bpf/proxysel";

    /// <summary>A bpf file system of the daemon's own, where none is mounted at /sys/fs/bpf (a fresh mount namespace, as
    /// under <c>ip netns exec</c>); mounting it needs CAP_SYS_ADMIN.</summary>
    public const string OwnPinDirectory = "/run/proxysel/bpf";

    private static readonly string[] PinDirectories = [HostPinDirectory, OwnPinDirectory];

    private readonly SafeFileHandle _tokens;
    private readonly SafeFileHandle _scratch;
    private readonly SafeFileHandle _program;
    private bool _disposed;

    private KernelJoinTokens(SafeFileHandle tokens, SafeFileHandle scratch, SafeFileHandle program, string pinPath)
    {
        _tokens = tokens;
        _scratch = scratch;
        _program = program;
        PinPath = pinPath;
    }

    public string PinPath { get; }

    public SafeFileHandle Program => _program;

    /// <summary>Whether <paramref name="token"/> (its 4 bytes as MP_JOIN carries them) is in the map.</summary>
    public bool Contains(ReadOnlySpan<byte> token) => BpfNative.LookupElement(_tokens, token, stackalloc byte[4]) == 0;

    public TokenLearningMaps Learning(uint listenerMark) =>
        new((int)_tokens.DangerousGetHandle(), (int)_scratch.DangerousGetHandle(), listenerMark);

    /// <summary>Creates the maps, loads and pins the match program as <paramref name="name"/>; false with a one-line reason.</summary>
    public static bool TryCreate(string name, int maxTokens, SafeFileHandle counters, out KernelJoinTokens? joins, out string? reason)
    {
        joins = null;
        var handles = new List<SafeFileHandle>();
        try
        {
            var tokens = BpfNative.CreateMap(BpfNative.MapTypeLruHash, 4, 4, maxTokens, 0, "psel_join_tok", out int errno);
            handles.Add(tokens);
            if (tokens.IsInvalid)
            {
                reason = $"kernel joins: BPF_MAP_CREATE (LRU tokens): {BpfNative.Errno(errno)}";
                return false;
            }

            // Its own scratch: a sock_ops program interrupted on this CPU by a softirq's transmit must not find its HMAC state overwritten.
            var scratch = BpfNative.CreateMap(BpfNative.MapTypePercpuArray, 4, Sha256Layout.Size, 1, 0, "psel_join_tmp", out errno);
            handles.Add(scratch);
            if (scratch.IsInvalid)
            {
                reason = $"kernel joins: BPF_MAP_CREATE (scratch): {BpfNative.Errno(errno)}";
                return false;
            }

            byte[] code = JoinMatchProgram.Emit((int)tokens.DangerousGetHandle(), (int)counters.DangerousGetHandle());
            var program = BpfNative.LoadProgram(BpfNative.ProgTypeSocketFilter, code, 0, "psel_join", out errno, out string log);
            handles.Add(program);
            if (program.IsInvalid)
            {
                reason = $"kernel joins: BPF_PROG_LOAD (join match): {BpfNative.Errno(errno)} verifier: {log.Trim().Split('\n')[^1]}";
                return false;
            }

            if (!TryPinDirectory(out string? directory, out reason))
            {
                return false;
            }

            string path = Path.Combine(directory!, name);
            File.Delete(path); // a killed daemon's of the same pid
            int pinned = BpfNative.Pin(program, path);
            if (pinned != 0)
            {
                reason = $"kernel joins: BPF_OBJ_PIN {path}: {BpfNative.Errno(pinned)}";
                return false;
            }

            joins = new KernelJoinTokens(tokens, scratch, program, path);
            reason = null;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            reason = $"kernel joins: {e.Message}";
            return false;
        }
        finally
        {
            if (joins == null)
            {
                foreach (var handle in handles)
                {
                    handle.Dispose();
                }
            }
        }
    }

    /// <summary>The host's bpf file system when /sys/fs/bpf is one (a service under systemd: no mount, so no
    /// CAP_SYS_ADMIN), else one of the daemon's own at <see cref="OwnPinDirectory"/>.</summary>
    private static bool TryPinDirectory(out string? directory, out string? reason)
    {
        reason = null;
        if (IsBpfMount("/sys/fs/bpf"))
        {
            try
            {
                Directory.CreateDirectory(HostPinDirectory);
                directory = HostPinDirectory;
                return true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Read-only here: a mount of our own below.
            }
        }

        directory = OwnPinDirectory;
        Directory.CreateDirectory(OwnPinDirectory);
        if (IsBpfMount(OwnPinDirectory))
        {
            return true;
        }

        if (BpfNative.Mount("bpf", OwnPinDirectory, "bpf", 0, 0) != 0)
        {
            reason = $"kernel joins: no bpf file system at /sys/fs/bpf, and mount -t bpf at {OwnPinDirectory}: {BpfNative.Errno(Marshal.GetLastPInvokeError())}";
            return false;
        }

        return true;
    }

    private static bool IsBpfMount(string mountPoint)
    {
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            int dash = line.IndexOf(" - ", StringComparison.Ordinal);
            if (dash > 0 && line.AsSpan(dash + 3).StartsWith("bpf ") && line.Split(' ')[4] == mountPoint)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Removes the pins of <paramref name="prefix"/>'s daemons whose process is gone (a killed one's; a live daemon's
    /// stays); returns the paths removed. Each name ends in its daemon's process id.
    /// </summary>
    public static IReadOnlyList<string> CleanupPrefixed(string prefix)
    {
        var removed = new List<string>();
        foreach (string path in PinDirectories.Where(Directory.Exists).SelectMany(d => Directory.EnumerateFiles(d, prefix + "*")))
        {
            string pid = Path.GetFileName(path)[prefix.Length..];
            if (int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int id) && Directory.Exists($"/proc/{id}"))
            {
                continue;
            }

            try
            {
                File.Delete(path);
                removed.Add(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Left for the next cleanup.
            }
        }

        return removed;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        try
        {
            File.Delete(PinPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The rule holds its own reference; cleanup removes the file later.
        }

        _program.Dispose();
        _scratch.Dispose();
        _tokens.Dispose();
    }
}
