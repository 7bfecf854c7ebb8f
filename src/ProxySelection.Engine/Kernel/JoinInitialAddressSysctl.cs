using System.Globalization;

namespace ProxySelection.Engine.Kernel;

/// <summary>
/// The kernel side of instance mode (spec §12.6): <c>net.mptcp.allow_join_initial_addr_port=0</c> in this network
/// namespace, so the MP_CAPABLE its listeners send carries the C flag. The value it replaced is recorded in a file
/// beside the announced endpoints' record before the write, so the stop and <c>proxysel cleanup</c> (after a SIGKILL)
/// put the same value back.
/// </summary>
public sealed class JoinInitialAddressSysctl(string recordPath, string? sysctlPath = null)
{
    public const string Name = "net.mptcp.allow_join_initial_addr_port";

    public const string DefaultPath = "/proc/sys/net/mptcp/allow_join_initial_addr_port";

    private readonly string _sysctlPath = sysctlPath ?? DefaultPath;

    /// <summary>Where a proxy with <paramref name="chainPrefix"/> in this network namespace records the value it replaced.</summary>
    public static string RecordPathFor(string chainPrefix) => Path.ChangeExtension(AddressAnnouncer.RecordPathFor(chainPrefix), ".sysctl");

    /// <summary>
    /// Records the value found (a record left by a killed run keeps its value: the 0 found is that run's), writes 0 and
    /// reads it back; returns the value to restore. <see cref="JoinInitialAddressException"/> when it cannot take effect.
    /// </summary>
    public string SetOff()
    {
        var recorded = ReadRecord(recordPath);
        try
        {
            var found = File.ReadAllText(_sysctlPath).Trim();
            if (recorded is null)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(recordPath)!);
                File.WriteAllText(recordPath, found + "\n");
            }

            File.WriteAllText(_sysctlPath, "0\n");
            var now = File.ReadAllText(_sysctlPath).Trim();
            if (now != "0")
            {
                throw new IOException(string.Create(CultureInfo.InvariantCulture, $"it reads {now} after writing 0"));
            }

            return recorded ?? found;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException && !File.Exists(_sysctlPath))
        {
            throw new JoinInitialAddressException(missing: true, $"this kernel has no {Name} (Linux 5.16 or later)", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Nothing changed: a record of ours goes, one a killed run left keeps its value for cleanup.
            if (recorded is null)
            {
                DeleteRecord(recordPath);
            }

            throw new JoinInitialAddressException(missing: false, e.Message, e);
        }
    }

    /// <summary>
    /// Writes the recorded value back (none recorded, or 0: nothing written) and deletes the record; returns the value
    /// written, or null. <see cref="IOException"/> or <see cref="UnauthorizedAccessException"/> when the write fails (the record stays).
    /// </summary>
    public string? Restore() => Restore(recordPath, _sysctlPath);

    /// <summary><c>proxysel cleanup</c>: what <see cref="Restore()"/> does, for the record of a proxy that did not stop.</summary>
    public static string? Restore(string recordPath, string? sysctlPath = null)
    {
        if (ReadRecord(recordPath) is not { } value)
        {
            DeleteRecord(recordPath);
            return null;
        }

        if (value != "0")
        {
            File.WriteAllText(sysctlPath ?? DefaultPath, value + "\n");
        }

        DeleteRecord(recordPath);
        return value == "0" ? null : value;
    }

    /// <summary>The recorded value: one line of digits; anything else (or no file) is none.</summary>
    public static string? ReadRecord(string path)
    {
        try
        {
            var text = File.ReadAllText(path).Trim();
            return text.Length is > 0 and < 8 && text.All(char.IsAsciiDigit) ? text : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static void DeleteRecord(string path)
    {
        if (File.Exists(path))
        {
            File.Delete(path);
        }
    }
}

/// <summary>The C flag's sysctl cannot take effect: <see cref="Missing"/> (no such sysctl) or not writable.</summary>
public sealed class JoinInitialAddressException(bool missing, string message, Exception? inner = null) : Exception(message, inner)
{
    public bool Missing { get; } = missing;
}
