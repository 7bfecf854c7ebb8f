using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace ProxySelection.Interception.Bpf;

/// <summary>The bpf(2) commands this library uses, over libc's syscall(2) (union bpf_attr built as bytes).</summary>
internal static unsafe partial class BpfNative
{
    // bpf(2): 321 on x86_64, 280 on arm64 (the generic table).
    private static readonly long SysBpf = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 280 : 321;
    private const int AttrSize = 144; // sizeof(union bpf_attr) in the uapi header this was written against

    public const int MapCreate = 0, MapLookupElem = 1, MapUpdateElem = 2, MapDeleteElem = 3, MapGetNextKey = 4, ProgLoad = 5, ObjPin = 6, ProgTestRun = 10, ObjGetInfoByFd = 15, ProgQuery = 16,
        LinkCreate = 28;

    public const int MapTypeHash = 1, MapTypeArray = 2, MapTypePercpuArray = 6, MapTypeLruHash = 9;
    public const int ProgTypeSocketFilter = 1, ProgTypeSchedCls = 3, ProgTypeSockOps = 13;
    public const int AttachCgroupSockOps = 3;
    public const int AttachTcxEgress = 47; // BPF_TCX_EGRESS (6.6+; newer than the uapi header here)
    public const uint NoPrealloc = 1;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, long command, void* attr, long size);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mount(string source, string target, string fileSystemType, ulong flags, nint data);

    /// <summary>A duplicate of <paramref name="handle"/> without close-on-exec (bpf(2) descriptors have it): a child started next inherits it.</summary>
    public static int DuplicateInheritable(SafeFileHandle handle)
    {
        const int FDupfd = 0;
        return Fcntl((int)handle.DangerousGetHandle(), FDupfd, 3);
    }

    /// <summary>Opens a directory read-only (a cgroup, for BPF_LINK_CREATE and BPF_PROG_QUERY).</summary>
    public static SafeFileHandle OpenDirectory(string path, out int errno)
    {
        const int ODirectory = 0x10000, OCloexec = 0x80000;
        int fd = Open(path, ODirectory | OCloexec);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return new SafeFileHandle(fd, ownsHandle: fd >= 0);
    }

    private static long Bpf(int command, Span<byte> attr)
    {
        fixed (byte* p = attr)
        {
            return Syscall(SysBpf, command, p, attr.Length);
        }
    }

    private static void Put32(Span<byte> attr, int offset, uint value) => MemoryMarshal.Write(attr[offset..], in value);

    private static void Put64(Span<byte> attr, int offset, ulong value) => MemoryMarshal.Write(attr[offset..], in value);

    public static string Errno(int errno) => $"{ErrnoName(errno)} ({Marshal.GetPInvokeErrorMessage(errno)})";

    private static string ErrnoName(int errno) => errno switch
    {
        1 => "EPERM",
        2 => "ENOENT",
        7 => "E2BIG",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        22 => "EINVAL",
        28 => "ENOSPC",
        95 => "EOPNOTSUPP",
        524 => "ENOTSUPP",
        _ => $"errno {errno}",
    };

    public static SafeFileHandle CreateMap(int type, int keySize, int valueSize, int maxEntries, uint flags, string name, out int errno)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        Put32(attr, 0, (uint)type);
        Put32(attr, 4, (uint)keySize);
        Put32(attr, 8, (uint)valueSize);
        Put32(attr, 12, (uint)maxEntries);
        Put32(attr, 16, flags);
        Encoding.ASCII.GetBytes(name.AsSpan(0, Math.Min(name.Length, 15)), attr[28..]);
        long fd = Bpf(MapCreate, attr);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return new SafeFileHandle((nint)fd, ownsHandle: fd >= 0);
    }

    public static int UpdateElement(SafeFileHandle map, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value) =>
        ElementCommand(MapUpdateElem, map, key, value);

    /// <summary>Reads one element (for a per-CPU map, <paramref name="value"/> holds one 8-byte-rounded value per possible CPU).</summary>
    public static int LookupElement(SafeFileHandle map, ReadOnlySpan<byte> key, Span<byte> value) =>
        ElementCommand(MapLookupElem, map, key, value);

    /// <summary>Removes one element; returns 0 or the errno (ENOENT: not there).</summary>
    public static int DeleteElement(SafeFileHandle map, ReadOnlySpan<byte> key) => ElementCommand(MapDeleteElem, map, key, default);

    /// <summary>The key after <paramref name="key"/> (the first key when <paramref name="key"/> is not in the map, or
    /// empty); returns 0 or the errno (ENOENT: no more).</summary>
    public static int NextKey(SafeFileHandle map, ReadOnlySpan<byte> key, Span<byte> next) =>
        ElementCommand(MapGetNextKey, map, key, next); // bpf_attr's next_key sits where value does

    /// <summary>A map element command (map fd, key and value pointers, flags 0); returns 0 or the errno.</summary>
    private static int ElementCommand(int command, SafeFileHandle map, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        fixed (byte* k = key)
        fixed (byte* v = value)
        {
            Put32(attr, 0, (uint)map.DangerousGetHandle());
            Put64(attr, 8, (ulong)k);
            Put64(attr, 16, (ulong)v);
            return Bpf(command, attr) < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
    }

    /// <summary>BPF_OBJ_PIN: <paramref name="path"/> (in a bpf file system) keeps the object alive; returns 0 or the errno.</summary>
    public static int Pin(SafeFileHandle obj, string path)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        byte[] name = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* n = name)
        {
            Put64(attr, 0, (ulong)n);
            Put32(attr, 8, (uint)obj.DangerousGetHandle());
            return Bpf(ObjPin, attr) < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
    }

    /// <summary>Loads a program; on failure <paramref name="log"/> holds the verifier's output.</summary>
    public static SafeFileHandle LoadProgram(int type, ReadOnlySpan<byte> instructions, int expectedAttachType, string name,
        out int errno, out string log)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        byte[] license = "GPL\0"u8.ToArray();
        var logBuffer = new byte[1 << 20];
        long fd;
        fixed (byte* insns = instructions)
        fixed (byte* lic = license)
        fixed (byte* logPtr = logBuffer)
        {
            Put32(attr, 0, (uint)type);
            Put32(attr, 4, (uint)(instructions.Length / 8));
            Put64(attr, 8, (ulong)insns);
            Put64(attr, 16, (ulong)lic);
            // Log only on a retry: a log level of 1 makes every load slower and its buffer must hold the whole trace.
            Encoding.ASCII.GetBytes(name.AsSpan(0, Math.Min(name.Length, 15)), attr[48..]);
            Put32(attr, 68, (uint)expectedAttachType);
            fd = Bpf(ProgLoad, attr);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
            log = "";
            if (fd < 0)
            {
                Put32(attr, 24, 1);
                Put32(attr, 28, (uint)logBuffer.Length);
                Put64(attr, 32, (ulong)logPtr);
                long retry = Bpf(ProgLoad, attr);
                if (retry >= 0)
                {
                    // Loads with a log and not without: keep it (cannot happen for a deterministic verifier).
                    fd = retry;
                    errno = 0;
                }

                int end = Array.IndexOf(logBuffer, (byte)0);
                log = Encoding.ASCII.GetString(logBuffer, 0, end < 0 ? logBuffer.Length : end);
            }
        }

        return new SafeFileHandle((nint)fd, ownsHandle: fd >= 0);
    }

    /// <summary>BPF_LINK_CREATE: the attachment lives as long as the returned fd (a dead process leaves nothing attached).</summary>
    public static SafeFileHandle CreateLink(SafeFileHandle program, SafeFileHandle target, int attachType, out int errno) =>
        CreateLink(program, (uint)target.DangerousGetHandle(), attachType, out errno);

    /// <summary>BPF_LINK_CREATE on a network interface (tcx): <paramref name="ifindex"/> in the calling thread's namespace.</summary>
    public static SafeFileHandle CreateLink(SafeFileHandle program, int ifindex, int attachType, out int errno) =>
        CreateLink(program, (uint)ifindex, attachType, out errno);

    // target_fd and target_ifindex share the attr's second word.
    private static SafeFileHandle CreateLink(SafeFileHandle program, uint target, int attachType, out int errno)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        Put32(attr, 0, (uint)program.DangerousGetHandle());
        Put32(attr, 4, target);
        Put32(attr, 8, (uint)attachType);
        long fd = Bpf(LinkCreate, attr);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return new SafeFileHandle((nint)fd, ownsHandle: fd >= 0);
    }

    /// <summary>BPF_PROG_QUERY: how many programs of <paramref name="attachType"/> are attached to <paramref name="target"/> itself.</summary>
    public static int QueryPrograms(SafeFileHandle target, int attachType, out int errno)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        Put32(attr, 0, (uint)target.DangerousGetHandle());
        Put32(attr, 4, (uint)attachType);
        long r = Bpf(ProgQuery, attr);
        errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        return r < 0 ? -1 : (int)MemoryMarshal.Read<uint>(attr[24..]);
    }

    /// <summary>BPF_OBJ_GET_INFO_BY_FD of a program: run_time_ns and run_cnt (kept while kernel.bpf_stats_enabled is 1).</summary>
    public static int ProgramRunTime(SafeFileHandle program, out long runTimeNs, out long runCount)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        Span<byte> info = stackalloc byte[232];
        attr.Clear();
        info.Clear();
        fixed (byte* i = info)
        {
            Put32(attr, 0, (uint)program.DangerousGetHandle());
            Put32(attr, 4, (uint)info.Length);
            Put64(attr, 8, (ulong)i);
            long r = Bpf(ObjGetInfoByFd, attr);
            runTimeNs = MemoryMarshal.Read<long>(info[192..]);
            runCount = MemoryMarshal.Read<long>(info[200..]);
            return r < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
    }

    /// <summary>BPF_PROG_TEST_RUN over <paramref name="data"/> once; returns the program's return value.</summary>
    public static int TestRun(SafeFileHandle program, ReadOnlySpan<byte> data, out uint returnValue) =>
        TestRun(program, data, [], out returnValue);

    /// <summary>As <see cref="TestRun(SafeFileHandle, ReadOnlySpan{byte}, out uint)"/> with a context in (a struct __sk_buff: its mark, say).</summary>
    public static int TestRun(SafeFileHandle program, ReadOnlySpan<byte> data, ReadOnlySpan<byte> context, out uint returnValue)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        fixed (byte* d = data)
        fixed (byte* c = context)
        {
            Put32(attr, 0, (uint)program.DangerousGetHandle());
            Put32(attr, 8, (uint)data.Length);
            Put64(attr, 16, (ulong)d);
            Put32(attr, 32, 1);
            if (context.Length > 0)
            {
                Put32(attr, 40, (uint)context.Length);
                Put64(attr, 48, (ulong)c);
            }

            long r = Bpf(ProgTestRun, attr);
            returnValue = MemoryMarshal.Read<uint>(attr[4..]);
            return r < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
    }
}
